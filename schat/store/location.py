"""Which store a command uses: the data home's SQLite file, or a PostgreSQL URL.

``--store URL`` (or ``$SCHAT_STORE``) picks PostgreSQL for a cluster; without
it the store is ``HOME/server/users.db``. The PostgreSQL driver is imported
only here, for a ``postgresql://`` URL, so a single-process schat never needs
the ``cluster`` extra.
"""

from __future__ import annotations

from typing import List, Optional
from urllib.parse import unquote, urlsplit

from schat.errors import StoreError
from schat.paths import Home
from schat.store.database import Engine, SqliteFile

SCHEMES = ("postgresql", "postgres")
URL_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def redact(url: str) -> str:
    """``url`` as it may be shown: its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()
    except ValueError:
        return "(an unparsable URL)"


def check_url(url: str) -> None:
    """Refuse a URL whose parts cannot be told apart (so its password could show)."""
    if url.count("@") > 1:
        raise StoreError("--store: the URL has more than one '@'; write the password's "
                         "special characters %-encoded (@ as %40, / as %2F, : as %3A)")
    try:
        urlsplit(url).port
    except ValueError:
        raise StoreError(f"--store: not a usable PostgreSQL URL (expected {URL_FORM}, "
                         "special characters %-encoded)") from None


def url_secrets(url: str) -> List[str]:
    """What must never be shown of ``url``: the whole URL and its password, as written
    and decoded, longest first."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return [url]
    if not password:
        return [url]
    return sorted({url, password, unquote(password)}, key=len, reverse=True)


def is_store_url(url: str) -> bool:
    try:
        return urlsplit(url).scheme.lower() in SCHEMES
    except ValueError:
        return False


def open_engine(url: Optional[str], home: Home, kind: str = "account database") -> Engine:
    """The engine for ``url``, or the home's SQLite file when ``url`` is None or empty."""
    if not url:
        return SqliteFile(home.users_db, kind=kind)
    if not is_store_url(url):
        # Not echoed: a mistyped URL may still hold a password.
        raise StoreError(f"--store: not a PostgreSQL URL (expected {URL_FORM})")
    from schat.store.postgres import PostgresEngine

    return PostgresEngine(url)


def open_store(url: Optional[str], home: Home, **kwargs):
    """The :class:`~schat.store.accounts.AccountStore` at ``url`` (None: the home's SQLite
    file); closing the store closes its engine."""
    from schat.store.accounts import AccountStore

    engine = open_engine(url, home)
    try:
        return AccountStore(engine, owns_engine=True, **kwargs)
    except BaseException:
        engine.close()
        raise
