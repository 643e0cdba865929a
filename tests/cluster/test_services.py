"""The engine fixtures themselves: real servers, unprivileged, restartable on their port."""

from __future__ import annotations

import os

import psycopg
import pytest


def _owner_uid(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def test_postgres_runs_unprivileged_with_a_fresh_database(pg_service, pg_url):
    assert _owner_uid(pg_service.proc.pid) != 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "schat_app"
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone()[0] == 0
        conn.execute("CREATE TABLE t (x int)")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_url.replace("%40x", "%40WRONG"), connect_timeout=5).close()


def test_postgres_restart_keeps_port_and_data(pg_service, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    port, pid = pg_service.port, pg_service.proc.pid
    pg_service.restart()
    assert pg_service.port == port and pg_service.proc.pid != pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone()[0] == 7


def test_redis_runs_with_a_password_and_restarts_on_its_port(redis_service, redis_url):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    assert _owner_uid(redis_service.proc.pid) != 0
    with redis.Redis.from_url(redis_url, socket_timeout=10) as client:
        assert client.ping()
        pubsub = client.pubsub()
        pubsub.subscribe("services-test")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert client.publish("services-test", b"hello") == 1
        assert pubsub.get_message(timeout=5)["data"] == b"hello"
        pubsub.close()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=redis_service.port, password="wrong",
                    socket_timeout=10, retry=Retry(NoBackoff(), 0)).ping()
    port = redis_service.port
    redis_service.restart()
    assert redis_service.port == port
    with redis.Redis.from_url(redis_url, socket_timeout=10) as client:
        assert client.ping()
