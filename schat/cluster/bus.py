"""The bus between a cluster's server processes: Redis pub/sub, on the server's event loop.

Two connections to Redis (redis-py's asyncio client with the hiredis parser,
imported only when a ``redis://`` or ``rediss://`` URL is used): one publishes,
one is subscribed. Each line of a Redis message goes to ``on_message``, then
``on_read`` says the message is over (what was held back to apply together is
applied before the next is read). :meth:`Bus.publish` only queues; a publisher task sends what
queued meanwhile in one pipeline, consecutive messages to the same channel
joined into one Redis message (newline-separated: JSON never holds a raw
newline), so a busy room costs a few Redis messages per loop turn, not one per
line, and every process's messages reach the others in the order it sent them.

When Redis goes away, publishing drops (and counts) what it cannot send, the
subscriber reconnects with a growing pause, subscribes again to every channel
it wants, and reports ``on_state(True)``: the cluster node then catches up from
the store (:mod:`schat.cluster.node`). redis-py's own retries are off (its
default retries an authentication failure for several seconds, and a retry
inside a send would reorder messages); this module reconnects instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Callable, Dict, List, Optional, Set, Tuple
from urllib.parse import urlsplit

from schat.errors import SchatError
from schat.store.location import redact, url_secrets

log = logging.getLogger("schat.cluster")

EXTRA_HINT = "a Redis bus needs the cluster extra: pip install 'schat[cluster]'"
SCHEMES = ("redis", "rediss")
URL_FORM = "redis://[:PASSWORD@]HOST:PORT/N or rediss://..."
CONNECT_TIMEOUT = 5.0
# Pauses between reconnection attempts: from the first to the longest.
RETRY_FIRST, RETRY_MAX = 0.05, 2.0
# Messages waiting to be published beyond this are dropped (Redis is not keeping up).
PENDING_LIMIT = 100_000


class BusError(SchatError):
    """The bus cannot be used (a bad URL, Redis unreachable, a wrong password)."""


def check_bus_url(url: str) -> None:
    """BusError for a URL that is not a Redis one (without echoing it: it may hold a password)."""
    if url.count("@") > 1:
        raise BusError("--bus: the URL has more than one '@'; write the password's special "
                       "characters %-encoded (@ as %40, / as %2F, : as %3A)")
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        raise BusError(f"--bus: not a usable Redis URL (expected {URL_FORM})") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise BusError(f"--bus: not a Redis URL (expected {URL_FORM})")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise BusError(f"--bus: the database number must be an integer (expected {URL_FORM})")


def bus_prefix(url: str) -> str:
    """The channel prefix of a bus URL: pub/sub channels are shared by every database
    number of a Redis server, so the number in the URL keeps clusters apart."""
    db = urlsplit(url).path.strip("/") or "0"
    return f"schat:{db}:"


class Bus:
    """Pub/sub on Redis for one process (see the module docstring)."""

    def __init__(self, url: str, on_message: Callable[[bytes, bytes], None],
                 on_state: Callable[[bool], None],
                 on_subscribed: Callable[[bytes], None] = lambda channel: None,
                 on_read: Callable[[], None] = lambda: None, name: str = "schat"):
        check_bus_url(url)
        self.url = url
        # Its connections' name in Redis's CLIENT LIST (which node, for an operator).
        self.name = name
        self.where = redact(url)
        self._secrets = url_secrets(url)
        self.on_message = on_message
        self.on_state = on_state
        self.on_subscribed = on_subscribed
        self.on_read = on_read
        self.up = False
        self.dropped = 0
        self.published = 0
        self.received = 0
        # Times the subscriber connected again after losing Redis.
        self.reconnects = 0
        self._wanted: Set[bytes] = set()
        self._pending: List[Tuple[bytes, bytes]] = []
        self._wake: Optional[asyncio.Event] = None
        self._client = None
        self._pubsub = None
        self._tasks: List[asyncio.Task] = []
        self._stopping = False
        self._reset = False

    # -- errors --------------------------------------------------------------------
    def _reason(self, err: BaseException) -> str:
        text = str(err) or type(err).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        text = re.sub(r"^Error -?\d+ connecting to \S+?\. ", "", text).rstrip(".")
        if "invalid username-password" in text.lower() or "invalid password" in text.lower() \
                or "WRONGPASS" in text:
            return "authentication failed: wrong password"
        if "NOAUTH" in text or "Authentication required" in text:
            return "authentication failed: Redis wants a password (redis://:PASSWORD@...)"
        return text

    def error(self, err: BaseException) -> BusError:
        return BusError(f"{self.where}: bus unavailable ({self._reason(err)})")

    # -- life cycle ----------------------------------------------------------------
    async def start(self, channels) -> None:
        """Connect and subscribe to ``channels``; BusError when Redis cannot be used."""
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise BusError(EXTRA_HINT) from None
        self._wanted.update(channels)
        self._wake = asyncio.Event()
        try:
            await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT * 2)
        except BusError:
            raise
        except Exception as err:  # noqa: BLE001 - every failure to reach Redis says why
            await self._close_client()
            raise self.error(err) from None
        self._set_up(True)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(), name="schat-bus-reader"),
                       loop.create_task(self._publish(), name="schat-bus-publisher")]

    async def _connect(self) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), client_name=self.name,
                                socket_connect_timeout=CONNECT_TIMEOUT,
                                socket_keepalive=True, health_check_interval=0)
        self._client = client
        await client.ping()
        pubsub = client.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(*sorted(self._wanted))

    async def _close_client(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        for thing in (pubsub, client):
            if thing is None:
                continue
            try:
                await asyncio.wait_for(thing.aclose(), 2)
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    async def stop(self) -> None:
        """Send what is queued (briefly), then disconnect."""
        self._stopping = True
        if self.up and self._pending:
            try:
                await asyncio.wait_for(self._send(self._take()), 2)
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        await self._close_client()
        self.up = False

    def reset(self) -> None:
        """Reconnect now (the node found its own heartbeats missing: the subscription
        went silent without the connection failing)."""
        self._reset = True
        pubsub = self._pubsub
        if pubsub is not None and pubsub.connection is not None:
            asyncio.get_running_loop().create_task(pubsub.connection.disconnect())

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        if not up:
            self._pending.clear()
        self.on_state(up)

    # -- subscriptions -------------------------------------------------------------
    def subscribe(self, channel: bytes) -> None:
        if channel in self._wanted:
            return
        self._wanted.add(channel)
        if self.up and self._pubsub is not None:
            asyncio.get_running_loop().create_task(self._command("subscribe", channel))

    def unsubscribe(self, channel: bytes) -> None:
        if channel not in self._wanted:
            return
        self._wanted.discard(channel)
        if self.up and self._pubsub is not None:
            asyncio.get_running_loop().create_task(self._command("unsubscribe", channel))

    def subscribed(self, channel: bytes) -> bool:
        return channel in self._wanted

    async def _command(self, what: str, channel: bytes) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await getattr(pubsub, what)(channel)
        except Exception as err:  # noqa: BLE001 - the reader notices the lost connection
            log.debug("bus %s %r failed: %s", what, channel, self._reason(err))

    # -- reading -------------------------------------------------------------------
    async def _read(self) -> None:
        delay = RETRY_FIRST
        while not self._stopping:
            pubsub = self._pubsub
            try:
                if pubsub is None:
                    raise ConnectionError("not connected")
                async for item in pubsub.listen():
                    kind = item["type"]
                    if kind == "message":
                        self.received += 1
                        for data in item["data"].split(b"\n"):
                            try:
                                self.on_message(item["channel"], data)
                            except Exception:  # noqa: BLE001 - one bad message, not the bus
                                log.exception("bus message on %r could not be applied",
                                              item["channel"])
                        try:
                            self.on_read()
                        except Exception:  # noqa: BLE001 - one bad message, not the bus
                            log.exception("bus messages on %r could not be applied",
                                          item["channel"])
                    elif kind == "subscribe":
                        self.on_subscribed(item["channel"])
                    if self._reset:
                        raise ConnectionError("reset")
                raise ConnectionError("the subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any loss: reconnect
                if self._stopping:
                    return
                if self.up:
                    log.warning("bus %s lost (%s); reconnecting", self.where, self._reason(err))
                self._reset = False
                self._set_up(False)
                await self._close_client()
                while not self._stopping:
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX, delay * 2)
                    try:
                        await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT * 2)
                    except asyncio.CancelledError:
                        raise
                    except Exception as again:  # noqa: BLE001
                        await self._close_client()
                        log.debug("bus %s still unavailable: %s", self.where,
                                  self._reason(again))
                        continue
                    delay = RETRY_FIRST
                    self.reconnects += 1
                    log.warning("bus %s connected again", self.where)
                    self._set_up(True)
                    break

    # -- publishing ----------------------------------------------------------------
    def publish(self, channel: bytes, data: bytes) -> None:
        """Queue ``data`` for ``channel`` (sent by the publisher task, in order)."""
        if not self.up:
            self.dropped += 1
            return
        pending = self._pending
        if len(pending) >= PENDING_LIMIT:
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.warning("bus %s is not keeping up: %d message(s) dropped", self.where,
                            self.dropped)
            return
        pending.append((channel, data))
        if len(pending) == 1:
            self._wake.set()

    def _take(self) -> List[Tuple[bytes, bytes]]:
        """The queued messages as Redis messages: runs to one channel joined."""
        pending, self._pending = self._pending, []
        out: List[Tuple[bytes, bytes]] = []
        run: List[bytes] = []
        channel = None
        for target, data in pending:
            if target != channel and run:
                out.append((channel, b"\n".join(run)))
                run = []
            channel = target
            run.append(data)
        if run:
            out.append((channel, b"\n".join(run)))
        return out

    async def _send(self, batch) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("not connected")
        pipe = client.pipeline(transaction=False)
        for channel, payload in batch:
            pipe.publish(channel, payload)
        await pipe.execute()
        self.published += len(batch)

    async def _publish(self) -> None:
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            if not self._pending:
                continue
            batch = self._take()
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the reader reconnects
                self.dropped += sum(p.count(b"\n") + 1 for _, p in batch)
                log.debug("bus publish failed: %s", self._reason(err))
                self._reset = True

    def stats(self) -> Dict[str, int]:
        return {"published": self.published, "received": self.received,
                "dropped": self.dropped, "subscribed": len(self._wanted),
                "reconnects": self.reconnects}


def check_reachable(url: str) -> None:
    """Connect to the bus once (blocking, at start-up): BusError saying why it cannot be used."""
    check_bus_url(url)
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise BusError(EXTRA_HINT) from None
    probe = Bus(url, lambda channel, data: None, lambda up: None)
    try:
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0),
                                      socket_connect_timeout=CONNECT_TIMEOUT,
                                      socket_timeout=CONNECT_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as err:  # noqa: BLE001 - every way of failing says why, in one line
        raise probe.error(err) from None
