"""Everything schat keeps on disk: accounts (SQLite), key files, pins, server list."""
