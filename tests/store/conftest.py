from chatkit import chat_home, server_factory  # noqa: F401  (fixtures)
