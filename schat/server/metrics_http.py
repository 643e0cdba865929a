"""``schat serve --metrics HOST:PORT``: the server's counts in Prometheus text format.

Uses the ``prometheus-client`` library (the optional extra ``schat[metrics]``),
imported only when metrics are asked for. Every value is read when the
endpoint is scraped, in the exporter's own thread: integers the loop keeps
(:mod:`schat.server.metrics`), lengths of the server's tables, and two small
queries on the account store for the mailbox sizes. Counts only: no metric
carries a member's name, an address or any text.
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple

from schat import __version__
from schat.errors import ConfigError
from schat.server.metrics import LagProbe

log = logging.getLogger("schat.server")

EXTRA_HINT = "pip install 'schat[metrics]'"
DEFAULT_HOST = "127.0.0.1"


def import_client():
    """The prometheus_client module, or a one-line error naming the extra."""
    try:
        import prometheus_client
        import prometheus_client.core  # noqa: F401
    except ImportError:
        raise ConfigError("--metrics needs the prometheus-client package, which is not "
                          f"installed: {EXTRA_HINT}") from None
    return prometheus_client


def parse_address(text: str) -> Tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (loopback); ValueError when malformed."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (a port from 0 to 65535)")
    return host, int(port)


class MetricsCollector:
    """A Prometheus collector reading one running server."""

    def __init__(self, server, lag: Optional[LagProbe] = None):
        self.server = server
        self.lag = lag

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            SummaryMetricFamily)

        server = self.server
        stats = server.stats

        def gauge(name, doc, value):
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name, doc, value):
            return CounterMetricFamily(name, doc, value=value)

        def by(label, name, doc, counts, kind=CounterMetricFamily, known=()):
            family = kind(name, doc, labels=[label])
            values = dict(counts)
            for key in known:
                values.setdefault(key, 0)
            for key, value in sorted(values.items()):
                family.add_metric([key], value)
            return family

        info = GaugeMetricFamily("schat_info", "schat version (always 1)", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        # len() of the loop's containers is atomic under the interpreter lock.
        yield gauge("schat_members", "members logged in", len(server.hub))
        yield gauge("schat_connections", "open connections, logged in or not", len(server.links))
        yield gauge("schat_unauthenticated_connections", "connections not logged in yet",
                    server.admission.count)
        yield counter("schat_accepted_connections", "connections accepted", stats.connections)
        yield counter("schat_handshakes", "handshakes completed", stats.handshakes)
        yield by("method", "schat_logins", "successful logins by method", stats.logins,
                 known=("password", "key", "signup"))
        yield by("reason", "schat_login_failures", "refused logins and sign-ups by reason",
                 stats.login_failures, known=("auth_failed", "penalty"))
        yield counter("schat_deliveries", "chat messages and notices delivered to members "
                      "(one per recipient)", server.hub.deliveries)
        yield counter("schat_sent_bytes", "bytes written to clients (handshakes, login "
                      "replies and records)", stats.bytes_sent)
        yield by("limit", "schat_refusals", "messages and connections refused or closed by a "
                 "server limit", stats.refusals, known=("rate", "busy", "penalty",
                                                        "unauthenticated", "outbound_cap"))
        yield by("reason", "schat_disconnects", "closed connections by reason",
                 stats.disconnects)
        waiting, running = stats.crypto_queue()
        yield gauge("schat_crypto_queue_depth", "RSA, password-hashing and signature-check jobs "
                    "waiting for a thread", waiting)
        yield gauge("schat_crypto_jobs_running", "RSA, password-hashing and signature-check "
                    "jobs running", running)
        yield gauge("schat_crypto_workers", "crypto threads", server.settings.crypto_workers)
        yield SummaryMetricFamily("schat_crypto_job_seconds", "time spent in crypto jobs",
                                  count_value=stats.crypto_finished,
                                  sum_value=stats.crypto_seconds)
        yield SummaryMetricFamily("schat_dm_signature_check_seconds", "direct-message "
                                  "signature checks run in the crypto threads, and their "
                                  "thread CPU time", count_value=stats.signature_checks,
                                  sum_value=stats.signature_check_seconds)
        yield from self._mailboxes()
        if self.lag is not None:
            yield gauge("schat_event_loop_lag_seconds", "how late the last 0.25 s timer ran",
                        self.lag.last)
            yield gauge("schat_event_loop_lag_max_seconds", "largest timer lateness in the last "
                        "minute", self.lag.maximum())

    def _mailboxes(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            with self.server.store.reading() as conn:
                total, recipients, largest = conn.execute(
                    "SELECT coalesce(sum(n), 0), count(*), coalesce(max(n), 0) FROM "
                    "(SELECT count(*) AS n FROM mailbox GROUP BY recipient)").fetchone()
        except Exception as err:  # noqa: BLE001 - a scrape must not fail on a busy store
            log.warning("metrics: cannot read the mailbox sizes: %s", err)
            return
        yield GaugeMetricFamily("schat_mailbox_messages", "direct messages stored for absent "
                                "members", value=total)
        yield GaugeMetricFamily("schat_mailbox_recipients", "members with stored direct "
                                "messages", value=recipients)
        yield GaugeMetricFamily("schat_mailbox_largest", "stored direct messages of the "
                                "fullest mailbox", value=largest)


class MetricsEndpoint:
    """The HTTP endpoint in its own thread; :meth:`close` stops it."""

    def __init__(self, server, host: str, port: int):
        client = import_client()
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        self.lag = LagProbe(server.loop)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MetricsCollector(server, self.lag))
        ProcessCollector(registry=self.registry)
        try:
            self._httpd, self._thread = client.start_http_server(port, addr=host,
                                                                 registry=self.registry)
        except OSError as err:
            raise ConfigError(f"--metrics: cannot listen on {host}:{port}: "
                              f"{err.strerror or err}") from None
        self.address = self._httpd.server_address[:2]
        self.lag.start()

    def close(self) -> None:
        self.lag.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
