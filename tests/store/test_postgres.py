"""What only PostgreSQL has: per-key locks, the pool, a server that goes away, URLs."""

from __future__ import annotations

import threading

import psycopg
import pytest

from schat.crypto.passwords import ScryptParams
from schat.errors import StoreError
from schat.store.accounts import AccountStore
from schat.store.postgres import PostgresEngine
from services import APP_PASSWORD, free_port

LIGHT = ScryptParams(log2_n=10)
WAIT = 20.0


@pytest.fixture
def engine(pg_url):
    e = PostgresEngine(pg_url)
    e.migrate([("CREATE TABLE t (k TEXT, v INTEGER)",)], component="t")
    yield e
    e.close()


def secret_free(text: str) -> bool:
    return APP_PASSWORD not in text and "app-Pw%253" not in text


class Held:
    """A transaction held open in another thread until released."""

    def __init__(self, engine, key=None):
        self.entered, self.release, self.error = threading.Event(), threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(engine, key))
        self.thread.start()
        assert self.entered.wait(WAIT)

    def _run(self, engine, key):
        try:
            with engine.transaction(key) as conn:
                conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key or "-", 1))
                self.entered.set()
                self.release.wait(WAIT)
        except Exception as exc:  # pragma: no cover - checked by done()
            self.error = exc
            self.entered.set()

    def done(self):
        self.release.set()
        self.thread.join(WAIT)
        assert self.error is None


def test_keyed_transactions_block_only_their_key(pg_url, engine):
    quick = PostgresEngine(pg_url, busy_timeout=0.3)
    try:
        held = Held(engine, "mailbox:alice")
        with quick.transaction("mailbox:bob") as conn:  # another key goes ahead
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("bob", 2))
        for key in ("mailbox:alice", None):  # the same key, and a plain writer, wait
            with pytest.raises(StoreError) as err:
                with quick.transaction(key):
                    pass
            assert str(err.value).endswith(": the store is busy; try again")
        held.done()
        with quick.transaction("mailbox:alice") as conn:  # free again
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("alice", 3))
        plain = Held(engine)  # a plain writer excludes every key
        with pytest.raises(StoreError, match="busy"):
            with quick.transaction("mailbox:carol"):
                pass
        plain.done()
        with quick.reading() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 4
    finally:
        quick.close()


def _schat_connections(pg_service, db: str) -> int:
    with pg_service.admin() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                            "AND application_name = 'schat'", (db,)).fetchone()[0]


def test_pool_is_bounded_and_closed(pg_service, pg_url):
    db = pg_url.rsplit("/", 1)[1]
    small = PostgresEngine(pg_url, pool_size=2, busy_timeout=0.3)
    first, second = small.reading(), small.reading()
    inside = threading.Event()
    leave = threading.Event()

    def hold():
        with second:
            inside.set()
            leave.wait(WAIT)

    holder = threading.Thread(target=hold)
    with first:
        holder.start()
        assert inside.wait(WAIT)
        assert _schat_connections(pg_service, db) == 2
        result = {}
        third = threading.Thread(target=lambda: result.setdefault("err", _try_read(small)))
        third.start()
        third.join(WAIT)
        assert "every connection in use" in str(result["err"])
    leave.set()
    holder.join(WAIT)
    with small.reading() as conn:  # handed back: usable again, no new connection
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert _schat_connections(pg_service, db) == 2
    small.close()
    assert _schat_connections(pg_service, db) == 0


def _try_read(engine):
    try:
        with engine.reading() as conn:
            conn.execute("SELECT 1")
    except StoreError as err:
        return err
    return None


def test_down_wrong_password_and_bad_urls_never_show_the_password(pg_service, pg_url):
    closed = pg_url.replace(f":{pg_service.port}/", f":{free_port()}/")
    with pytest.raises(StoreError) as err:
        PostgresEngine(closed)
    assert "store unavailable (Connection refused)" in str(err.value)
    assert str(err.value).startswith("postgresql://schat_app:***@127.0.0.1:")
    wrong = pg_url.replace("%40x", "%40y")
    with pytest.raises(StoreError) as err:
        PostgresEngine(wrong)
    assert str(err.value).endswith('store unavailable (password authentication failed for '
                                   'user "schat_app")')
    bogus = pg_url + "?bogus_option=1"
    with pytest.raises(StoreError) as err:
        PostgresEngine(bogus)
    assert 'not a usable PostgreSQL URL (invalid URI query parameter: "bogus_option")' \
        in str(err.value)
    for unquoted in (f"postgresql://u:{APP_PASSWORD}@127.0.0.1/x",  # '@' in the password
                     "postgresql://u:a%2Fb@[::1/x", "postgresql://u:a%2Fb@h:port/x"):
        with pytest.raises(StoreError) as err:
            PostgresEngine(unquoted)
        assert str(err.value).startswith("--store: "), str(err.value)
        assert secret_free(str(err.value)) and "a%2Fb" not in str(err.value)


def test_restart_is_survived_and_an_outage_is_a_clear_error(pg_service, pg_url):
    store = AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True)
    try:
        store.add("alice", "tangerine42")
        with store.reading(), store.reading():  # two pooled connections (nested reuse: one)
            pass
        pg_service.restart()
        # The pooled connections died with the old server: replaced, the call succeeds.
        assert store.check_password("alice", "tangerine42").ok
        store.add("bob", "tangerine42")
        pg_service.stop()
        for call in (lambda: store.get("alice"), lambda: store.add("carol", "tangerine42"),
                     lambda: store.check_password("alice", "tangerine42")):
            with pytest.raises(StoreError) as err:
                call()
            assert "store unavailable (" in str(err.value), str(err.value)
            assert secret_free(str(err.value))
        pg_service.start()
        assert [a.name for a in store.list()] == ["alice", "bob"]  # the same store object
    finally:
        if not pg_service.running:
            pg_service.start()
        store.close()


def test_connection_lost_inside_a_transaction(pg_service, pg_url, engine):
    with pytest.raises(StoreError) as err:
        with engine.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("lost", 1))
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            with pg_service.admin() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("lost", 2))
    assert "store unavailable (" in str(err.value)
    with engine.reading() as conn:  # nothing of it was kept; the engine carries on
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_a_database_without_citext_rights_is_a_clear_error(pg_service, pg_url):
    db = pg_url.rsplit("/", 1)[1]
    with pg_service.admin() as admin:  # a database the role may use but does not own
        admin.execute(f"ALTER DATABASE {db} OWNER TO admin")
    with pg_service.admin(db) as admin:
        admin.execute("GRANT CREATE ON SCHEMA public TO schat_app")
    with pytest.raises(StoreError) as err:
        AccountStore(PostgresEngine(pg_url), hash_params=LIGHT, owns_engine=True)
    assert "schat needs the citext extension" in str(err.value)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone()[0] == 0
