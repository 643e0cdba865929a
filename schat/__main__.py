"""Allow ``python -m schat``."""

from schat.cli import main

if __name__ == "__main__":
    main()
