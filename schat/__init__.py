"""schat: a self-hosted secure chat toolkit."""

__version__ = "0.1.0"
