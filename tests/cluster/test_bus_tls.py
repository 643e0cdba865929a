"""The bus over TLS (rediss://): nodes check Redis's certificate, and chat goes through."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from clusterkit import Cluster, answer, login, settle, until
from schat.cluster.bus import BusError, check_reachable
from schat.protocol import messages
from services import REDIS_PASSWORD, Process, RedisService


class TlsRedis(RedisService):
    """A Redis of this test's own that speaks TLS only, with a self-signed certificate."""

    def __init__(self):
        super().__init__()
        self.cert = self.root / "cert.pem"
        key = self.root / "key.pem"
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(self.cert), "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        if self.account is not None:
            for path in (self.cert, key):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _launch(self, port: int) -> Process:
        self.port = port
        argv = [self.binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(self.cert), "--tls-key-file", str(self.root / "key.pem"),
                "--tls-ca-cert-file", str(self.cert), "--tls-auth-clients", "no",
                "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--daemonize", "no", "--logfile", ""]
        return Process("redis-server (TLS)", argv, "Ready to accept connections",
                       self.account, self.root)

    def tls_url(self, ca: bool = True) -> str:
        query = f"?ssl_ca_certs={self.cert}&ssl_cert_reqs=required" if ca else ""
        return f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0{query}"


@pytest.fixture
def tls_redis():
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test's certificate")
    service = TlsRedis()
    try:
        service.start()
        yield service
    finally:
        service.close()


def test_nodes_talk_over_tls_and_check_the_certificate(pg_url, tls_redis, host_key, tmp_path):
    with pytest.raises(BusError, match="certificate verify failed"):
        check_reachable(tls_redis.tls_url(ca=False))
    plain = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{tls_redis.port}/0"
    with pytest.raises(BusError, match="bus unavailable"):  # TLS only: plain is refused
        check_reachable(plain)
    cluster = Cluster(pg_url, tls_redis.tls_url(), host_key, tmp_path)
    try:
        a, b = cluster.start(), cluster.start()
        alice, bob = login(a, "alice"), login(b, "bob")
        settle(a, lambda chat: "bob" in chat.remote)
        alice.session.say("over TLS")
        assert until(bob, messages.ChatMessage).text == "over TLS"
        assert answer(bob, "/join #tls") is None
        for c in (alice, bob):
            c.close()
    finally:
        cluster.stop()
