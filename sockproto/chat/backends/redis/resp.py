# -*- test-case-name: tests.test_resp -*-
"""
A small Redis client on Twisted: RESP commands pipelined on one
connection, replies parsed by C{hiredis.Reader}, and pub/sub messages handed
to a callback.

L{RedisLink} keeps two connections to one server up with
L{twisted.application.internet.ClientService} (reconnecting with capped,
jittered back-off): one for commands, one for subscriptions.  It tells its
owner when the server is reachable (both connections ready, channels
subscribed again) and when it is not.

A stopped or stalled redis-server keeps its TCP connections open, so a
closed connection is not the only sign that Redis is away: every command
has a deadline (L{RedisLink.timeout}), and a connection whose oldest
command is overdue is dropped, as if Redis had closed it.  A new
connection counts only once it has answered a C{PING}.
"""

import os
import random
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Set, Tuple, Union, cast
from urllib.parse import unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from ....logs import SafeLogger
from ....tlsclient import client_tls_options

__all__ = [
    "RedisAddress",
    "RedisError",
    "RedisLink",
    "RedisProtocol",
    "encode_command",
    "parse_redis_url",
]

Argument = Union[bytes, str, int, float]

log = SafeLogger()


class RedisError(Exception):
    """
    An error reply from the server (C{-ERR ...}).
    """


def encode_command(args: Tuple[Argument, ...]) -> bytes:
    """
    The RESP encoding of one command: an array of bulk strings.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, bytes):
            data = arg
        else:
            data = str(arg).encode("ascii")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisProtocol(Protocol):
    """
    One connection to Redis.  L{execute} writes a command at once (commands
    of one reactor turn leave in one write) and returns a Deferred of its
    reply; pub/sub messages go to L{messageReceived}.

    Once L{watch} is called, a command unanswered for C{timeout} seconds
    drops the connection (every waiting command fails with
    L{ConnectionLost}): Redis is stalled, or the path to it is.

    @ivar maxReply: the most bytes one reply may take; a longer one (a
        forged multi-megabyte C{PUBLISH}, say) drops the connection
        rather than the process's memory.
    """

    maxReply = 64 * 1024 * 1024
    clock: Optional[IReactorTime] = None
    timeout = 0.0

    def __init__(self) -> None:
        import hiredis  # the optional 'redis' extra

        self._reader: Any = hiredis.Reader(replyError=RedisError)
        self._waiting: Deque[Deferred[Any]] = deque()
        self._sent: Deque[float] = deque()
        self._watchdog: Optional[IDelayedCall] = None
        self._unread = 0
        self.messageReceived: Callable[[bytes, bytes], None] = lambda c, m: None
        self.lost: Deferred[None] = Deferred()

    def watch(self, clock: IReactorTime, timeout: float) -> None:
        """
        From now on, drop the connection when a command waits longer than
        C{timeout} seconds (0: never) by C{clock}.
        """
        self.clock, self.timeout = clock, timeout
        self._arm()

    def _arm(self) -> None:
        if self._watchdog is not None or not self._sent or not self.timeout:
            return
        assert self.clock is not None
        delay = self._sent[0] + self.timeout - self.clock.seconds()
        self._watchdog = self.clock.callLater(max(delay, 0), self._check)

    def _check(self) -> None:
        self._watchdog = None
        assert self.clock is not None
        if not self._sent or self.transport is None:
            return
        if self.clock.seconds() - self._sent[0] >= self.timeout:
            log.warn(
                "redis: no reply in {timeout} s; dropping the connection",
                timeout=self.timeout,
            )
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self._arm()

    @property
    def waiting(self) -> bool:
        """Whether a command waits for its reply."""
        return bool(self._waiting)

    def execute(self, *args: Argument) -> "Deferred[Any]":
        """
        Send one command.

        @return: a Deferred firing with the reply (bytes, int, list or
            None), or failing with L{RedisError} or L{ConnectionLost}.
        """
        d: Deferred[Any] = Deferred()
        if self.transport is None or not self.connected:
            d.errback(ConnectionLost("not connected to Redis"))
            return d
        self._waiting.append(d)
        if self.clock is not None:
            self._sent.append(self.clock.seconds())
            self._arm()
        self.transport.write(encode_command(args))
        return d

    def dataReceived(self, data: bytes) -> None:
        if self._reader is None:
            return  # aborted: what is still in flight is not read
        self._unread += len(data)  # since the last whole reply, about
        if self._unread > self.maxReply:
            log.warn(
                "redis: a reply of more than {max} bytes; dropping the connection",
                max=self.maxReply,
            )
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]
            self._reader = None
            return
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except Exception:  # a protocol error: the stream is lost
                log.failure("redis: unreadable reply")
                assert self.transport is not None
                self.transport.loseConnection()
                return
            if reply is False:
                return
            self._unread = 0
            self._replyReceived(reply)

    def _replyReceived(self, reply: Any) -> None:
        if isinstance(reply, list) and reply and reply[0] in (b"message", b"pmessage"):
            self.messageReceived(reply[-2], reply[-1])
            return
        if not self._waiting:
            log.warn("redis: a reply nobody asked for: {reply!r}", reply=reply)
            return
        d = self._waiting.popleft()
        if self._sent:
            self._sent.popleft()
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:
        self.connected = False
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog, self._sent = None, deque()
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(ConnectionLost("connection to Redis lost"))
        self.lost.callback(None)


class RedisAddress:
    """
    Where a Redis server is and how to log in, from a C{redis://},
    C{rediss://} (TLS) or C{unix://} URL.

    @ivar tls: whether to speak TLS, verifying the server's certificate
        against C{ca} (a PEM file) or, without one, the platform's roots.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 6379,
        path: str = "",
        db: int = 0,
        password: Optional[str] = None,
        username: Optional[str] = None,
        tls: bool = False,
        ca: Optional[str] = None,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.db, self.password, self.username = db, password, username
        self.tls, self.ca = tls, ca

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        if self.path:
            return UNIXClientEndpoint(reactor, self.path, timeout=10)
        endpoint = HostnameEndpoint(reactor, self.host, self.port, timeout=10)
        if not self.tls:
            return endpoint
        from twisted.internet.ssl import Certificate, platformTrust

        trust: Any = platformTrust()
        if self.ca is not None:
            with open(os.path.expanduser(self.ca), "rb") as f:
                trust = Certificate.loadPEM(f.read())
        return wrapClientTLS(client_tls_options(self.host, trustRoot=trust), endpoint)

    def __str__(self) -> str:
        if self.path:
            where = f"unix://{self.path}"
        else:
            where = f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"
        return f"{where} db {self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Read C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]}, the same with
    C{rediss://} (TLS; C{?ca=PEM-FILE} to trust a private CA), or
    C{unix://[[USER]:PASSWORD@]/PATH[?db=DB]}.

    @raise ValueError: with a one-line reason.
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"no socket path in {url!r}: unix:///PATH/redis.sock")
        db = _db(query.get("db", "0"), url)
        return RedisAddress(
            path=parts.path, db=db, password=password, username=username
        )
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r} is not a redis://, rediss:// or unix:// URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    host = parts.hostname or "localhost"
    db = _db(parts.path.lstrip("/") or "0", url)
    tls = parts.scheme == "rediss"
    ca = unquote(query["ca"]) if "ca" in query else None
    if ca is not None and not tls:
        raise ValueError(f"?ca= goes with rediss:// (TLS), in {url!r}")
    if ca is not None and not os.path.isfile(os.path.expanduser(ca)):
        raise ValueError(f"no CA file {ca!r}")
    if tls:
        try:
            from twisted.internet.ssl import platformTrust  # noqa: F401
        except ImportError:
            raise ValueError("rediss:// needs: pip install 'sockproto[tls]'") from None
    return RedisAddress(
        host, port, db=db, password=password, username=username, tls=tls, ca=ca
    )


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad database number {text!r} in {url!r}")
    return int(text)


class _LinkFactory(Factory):
    protocol = RedisProtocol
    noisy = False

    def __init__(self, link: "RedisLink", subscriber: bool) -> None:
        self.link = link
        self.subscriber = subscriber

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        protocol = RedisProtocol()
        protocol.maxReply = self.link.maxReply
        if self.subscriber:
            protocol.messageReceived = self.link.channelMessage
        protocol.lost.addCallback(lambda _: self.link.connectionLost(self.subscriber))
        return protocol


class _QuietClientService(ClientService):
    """
    A L{ClientService} that does not log each retry: L{RedisLink} says once
    that Redis is lost, and once that it is back.
    """

    _log = Logger(observer=cast(ILogObserver, lambda event: None))


class RedisLink(MultiService):
    """
    Two connections to one Redis server, kept up while the service runs.

    @ivar up: whether both connections are ready and every channel is
        subscribed.
    @ivar onUp: called (with no argument) each time the link comes up.
    @ivar onDown: called (with no argument) each time it goes down.
    @ivar onUnreachable: called (with no argument) when the first attempt
        to connect, or to log in, fails (the link goes on retrying).
    @ivar onMessage: called with (channel, message) for each pub/sub message.
    @ivar onResubscribed: called (with no argument) when the subscriber
        connection alone was lost, and its channels are subscribed again:
        what was published meanwhile was missed.
    @ivar timeout: seconds a command may wait for its reply before its
        connection is dropped as stalled (0: forever).
    """

    maxReply = RedisProtocol.maxReply

    def __init__(
        self,
        address: RedisAddress,
        reactor: Any,
        maxDelay: float = 10.0,
        timeout: float = 3.0,
    ) -> None:
        super().__init__()
        self.address = address
        self.reactor = reactor
        self.timeout = timeout
        self.up = False
        self.onUp: Callable[[], None] = lambda: None
        self.onDown: Callable[[], None] = lambda: None
        self.onUnreachable: Callable[[], None] = lambda: None
        self.onMessage: Callable[[bytes, bytes], None] = lambda c, m: None
        self.onResubscribed: Callable[[], None] = lambda: None
        self._resubscribing = False
        self.channels: Set[bytes] = set()
        self._commands: Optional[RedisProtocol] = None
        self._subscriber: Optional[RedisProtocol] = None
        self._policy = backoffPolicy(
            initialDelay=min(0.5, maxDelay),
            maxDelay=maxDelay,
            jitter=lambda: random.random() * min(1.0, maxDelay),
        )
        self._rejections = 0
        self._services: Dict[bool, ClientService] = {}
        for subscriber in (False, True):
            service = _QuietClientService(
                address.endpoint(reactor),
                _LinkFactory(self, subscriber),
                retryPolicy=self._retryDelay,
                clock=reactor,
                prepareConnection=self._prepare,
            )
            service.setServiceParent(self)
            self._services[subscriber] = service

    def _watch(self, subscriber: bool) -> None:
        d = self._services[subscriber].whenConnected(failAfterFailures=None)
        d.addCallback(self._connected, subscriber)
        d.addErrback(lambda f: None)  # the service stopped

    def _prepare(self, protocol: Any) -> "Deferred[Any]":
        address = self.address
        steps = []
        if address.password is not None:
            login = (address.username,) if address.username else ()
            steps.append(protocol.execute("AUTH", *login, address.password))
        if address.db:
            steps.append(protocol.execute("SELECT", address.db))
        steps.append(protocol.execute("PING"))  # a stalled server accepts, too
        d = gatherResults(steps, consumeErrors=True)
        if self.timeout:

            def expire() -> None:
                protocol.timedOut = True
                d.cancel()

            timer = self.reactor.callLater(self.timeout, expire)

            def answered(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            d.addBoth(answered)
        d.addCallback(lambda _: setattr(self, "_rejections", 0))
        return d.addErrback(self._refused, protocol)

    def _refused(self, failure: Failure, protocol: Any) -> None:
        """
        The server refused the login, or did not answer it in time.
        ClientService cannot be told so (a failed preparation that then
        closes its connection trips its state machine), so the connection
        counts as made, is closed at once, and the retries back off as if
        it had failed.
        """
        protocol.rejected = True
        self._rejections += 1
        if self._rejections == 1:
            if getattr(protocol, "timedOut", False):
                log.warn(
                    "redis: {address} does not answer (no reply in {timeout} s);"
                    " retrying",
                    address=str(self.address),
                    timeout=self.timeout,
                )
            else:
                why = getattr(failure.value, "subFailure", failure).getErrorMessage()
                log.warn(
                    "redis: {address} refused the login: {why}; retrying",
                    address=str(self.address),
                    why=why,
                )
            self.reactor.callLater(0, self.onUnreachable)  # not inside ClientService
        if protocol.transport is not None:
            protocol.transport.abortConnection()

    def _retryDelay(self, attempt: int) -> float:
        return self._policy(max(attempt, self._rejections))

    def _connected(self, protocol: Any, subscriber: bool) -> None:
        if getattr(protocol, "rejected", False):
            return  # closing: connectionLost watches for the next one
        protocol.watch(self.reactor, self.timeout)
        if subscriber:
            self._subscriber = protocol
            steps = [protocol.execute("SUBSCRIBE", c) for c in sorted(self.channels)]
            d = gatherResults(steps, consumeErrors=True)
            d.addCallback(lambda _: self._subscribed())
            d.addErrback(lambda f: None)  # lost again: connectionLost says so
        else:
            self._commands = protocol
            self._maybeUp()

    def _subscribed(self) -> None:
        if self.up and self._resubscribing:
            self._resubscribing = False
            log.info("redis: subscribed again to {address}", address=str(self.address))
            self.onResubscribed()
        else:
            self._maybeUp()

    def _maybeUp(self) -> None:
        if self.up or self._commands is None or self._subscriber is None:
            return
        self.up = True
        log.info("redis: connected to {address}", address=str(self.address))
        self.onUp()

    def connectionLost(self, subscriber: bool) -> None:
        """
        One of the two connections was lost.  Without the command
        connection the link is down until both are back; without the
        subscriber alone (Redis drops a subscriber whose output buffer a
        huge message filled), it stays up, and L{onResubscribed} says when
        its channels are heard again.
        """
        if subscriber:
            self._subscriber = None
        else:
            self._commands = None
        if self.running:  # once the service, too, has seen the loss
            self.reactor.callLater(0, self._watch, subscriber)
        if self.up and subscriber and self._commands is not None:
            self._resubscribing = True
            log.info(
                "redis: subscribing again to {address} (that connection closed)",
                address=str(self.address),
            )
            return
        self._resubscribing = False
        if self.up:
            self.up = False
            log.warn("redis: lost {address}; reconnecting", address=str(self.address))
            self.onDown()

    def channelMessage(self, channel: bytes, message: bytes) -> None:
        """
        A pub/sub message arrived on the subscriber connection.
        """
        if channel in self.channels:
            self.onMessage(channel, message)

    def execute(self, *args: Argument) -> "Deferred[Any]":
        """
        Run a command on the command connection.

        @raise ConnectionLost: (in the Deferred) while the link is down.
        """
        if self._commands is None:
            d: Deferred[Any] = Deferred()
            d.errback(ConnectionLost("Redis is unreachable"))
            return d
        return self._commands.execute(*args)

    def subscribe(self, channel: bytes) -> "Deferred[Any]":
        """
        Receive C{channel}'s messages from now on (again after each
        reconnection).  The Deferred fires once the server confirms.
        """
        self.channels.add(channel)
        if self._subscriber is None:
            return succeed(None)
        return self._subscriber.execute("SUBSCRIBE", channel)

    def unsubscribe(self, channel: bytes) -> None:
        """
        Stop receiving C{channel}'s messages.
        """
        self.channels.discard(channel)
        if self._subscriber is not None:
            self._subscriber.execute("UNSUBSCRIBE", channel).addErrback(lambda f: None)

    @property
    def busy(self) -> bool:
        """
        Whether a command is waiting for its reply.
        """
        return any(
            protocol is not None and protocol.waiting
            for protocol in (self._commands, self._subscriber)
        )

    def ping(self) -> "Deferred[Any]":
        """
        A round trip on both connections: once it fires, every message
        published before it was sent has been received.
        """
        protocols = [p for p in (self._commands, self._subscriber) if p is not None]
        pings = [protocol.execute("PING") for protocol in protocols]
        return gatherResults(pings, consumeErrors=True)

    def startService(self) -> None:
        super().startService()
        for subscriber in (False, True):
            self._watch(subscriber)
        d = self._services[False].whenConnected(failAfterFailures=1)
        d.addErrback(self._unreachable)

    def _unreachable(self, failure: Failure) -> None:
        if self.running:
            log.warn(
                "redis: cannot reach {address} ({why}); retrying",
                address=str(self.address),
                why=failure.getErrorMessage(),
            )
            self.reactor.callLater(0, self.onUnreachable)  # not inside ClientService

    def stopService(self) -> "Deferred[Any]":
        self.up = False
        return super().stopService()


def read_password_file(path: str) -> str:
    """
    The first line of the file at C{path}, for C{--redis-password-file}.
    """
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")
