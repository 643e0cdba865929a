from chatkit import chat_home, chat_server, server_factory  # noqa: F401  (fixtures)
