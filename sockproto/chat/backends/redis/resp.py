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
"""

import os
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Set, Tuple, Union, cast
from urllib.parse import unquote, urlsplit

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from ....logs import SafeLogger

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
    """

    def __init__(self) -> None:
        import hiredis  # the optional 'redis' extra

        self._reader = hiredis.Reader(replyError=RedisError)
        self._waiting: Deque[Deferred[Any]] = deque()
        self.messageReceived: Callable[[bytes, bytes], None] = lambda c, m: None
        self.lost: Deferred[None] = Deferred()

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
        self.transport.write(encode_command(args))
        return d

    def dataReceived(self, data: bytes) -> None:
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
            self._replyReceived(reply)

    def _replyReceived(self, reply: Any) -> None:
        if isinstance(reply, list) and reply and reply[0] in (b"message", b"pmessage"):
            self.messageReceived(reply[-2], reply[-1])
            return
        if not self._waiting:
            log.warn("redis: a reply nobody asked for: {reply!r}", reply=reply)
            return
        d = self._waiting.popleft()
        if isinstance(reply, RedisError):
            d.errback(reply)
        else:
            d.callback(reply)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:
        self.connected = False
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(ConnectionLost("connection to Redis lost"))
        self.lost.callback(None)


class RedisAddress:
    """
    Where a Redis server is and how to log in, from a C{redis://} or
    C{unix://} URL.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 6379,
        path: str = "",
        db: int = 0,
        password: Optional[str] = None,
        username: Optional[str] = None,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.db, self.password, self.username = db, password, username

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        if self.path:
            return UNIXClientEndpoint(reactor, self.path, timeout=10)
        return HostnameEndpoint(reactor, self.host, self.port, timeout=10)

    def __str__(self) -> str:
        where = f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{where} db {self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Read C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]} or
    C{unix://[[USER]:PASSWORD@]/PATH[?db=DB]}.

    @raise ValueError: with a one-line reason.
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"no socket path in {url!r}: unix:///PATH/redis.sock")
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        db = _db(query.get("db", "0"), url)
        return RedisAddress(
            path=parts.path, db=db, password=password, username=username
        )
    if parts.scheme != "redis":
        raise ValueError(f"{url!r} is not a redis:// or unix:// URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    host = parts.hostname or "localhost"
    db = _db(parts.path.lstrip("/") or "0", url)
    return RedisAddress(host, port, db=db, password=password, username=username)


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
    """

    def __init__(
        self,
        address: RedisAddress,
        reactor: Any,
        maxDelay: float = 10.0,
    ) -> None:
        super().__init__()
        self.address = address
        self.reactor = reactor
        self.up = False
        self.onUp: Callable[[], None] = lambda: None
        self.onDown: Callable[[], None] = lambda: None
        self.onUnreachable: Callable[[], None] = lambda: None
        self.onMessage: Callable[[bytes, bytes], None] = lambda c, m: None
        self.channels: Set[bytes] = set()
        self._commands: Optional[RedisProtocol] = None
        self._subscriber: Optional[RedisProtocol] = None
        self._policy = backoffPolicy(initialDelay=0.5, maxDelay=maxDelay)
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
            self._watch(subscriber)

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
        d = gatherResults(steps, consumeErrors=True)
        d.addCallback(lambda _: setattr(self, "_rejections", 0))
        return d.addErrback(self._refused, protocol)

    def _refused(self, failure: Failure, protocol: Any) -> None:
        """
        The server refused the login.  ClientService cannot be told so (a
        failed preparation that then closes its connection trips its state
        machine), so the connection counts as made, is closed at once, and
        the retries back off as if it had failed.
        """
        protocol.rejected = True
        self._rejections += 1
        if self._rejections == 1:
            why = getattr(failure.value, "subFailure", failure).getErrorMessage()
            log.error(
                "redis: {address} refused the login: {why}; retrying",
                address=str(self.address),
                why=why,
            )
            self.reactor.callLater(0, self.onUnreachable)  # not inside ClientService
        if protocol.transport is not None:
            protocol.transport.loseConnection()

    def _retryDelay(self, attempt: int) -> float:
        return self._policy(max(attempt, self._rejections))

    def _connected(self, protocol: Any, subscriber: bool) -> None:
        if getattr(protocol, "rejected", False):
            return  # closing: connectionLost watches for the next one
        if subscriber:
            self._subscriber = protocol
            steps = [protocol.execute("SUBSCRIBE", c) for c in sorted(self.channels)]
            d = gatherResults(steps, consumeErrors=True)
            d.addCallback(lambda _: self._maybeUp())
            d.addErrback(lambda f: None)  # lost again: connectionLost says so
        else:
            self._commands = protocol
            self._maybeUp()

    def _maybeUp(self) -> None:
        if self.up or self._commands is None or self._subscriber is None:
            return
        self.up = True
        log.info("redis: connected to {address}", address=str(self.address))
        self.onUp()

    def connectionLost(self, subscriber: bool) -> None:
        """
        One of the two connections was lost: the link is down until both
        are back.
        """
        if subscriber:
            self._subscriber = None
        else:
            self._commands = None
        if self.running:  # once the service, too, has seen the loss
            self.reactor.callLater(0, self._watch, subscriber)
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
