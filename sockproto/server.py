# -*- test-case-name: tests.test_faults -*-
"""
What every sockproto server shares: a factory that knows its open
connections, limits them and closes them all on shutdown, and a protocol
base class that logs, times out when idle and can be told to close.
"""

import ipaddress
import sys
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from twisted.application.service import IService
from twisted.internet import tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from .logs import SafeLogger
from .text import format_address, plural

__all__ = [
    "DEFAULT_MAX_PER_PEER",
    "RefusingProtocol",
    "ServiceFactory",
    "ServiceProtocol",
    "TokenBucket",
    "default_max_connections",
    "default_reactor",
    "no_delay",
    "send_now",
    "tcp_idle",
    "peer_key",
]

DEFAULT: Any = object()
"""An argument left out: the class's default applies (see L{ServiceFactory})."""

DEFAULT_MAX_PER_PEER = 32
"""Connections one address (one IPv6 /64) may have open at once, by default."""

FD_HEADROOM = 64
"""File descriptors kept free for logs, listening ports and the rest."""


def default_max_connections(services: int = 1) -> int:
    """
    The default limit of open connections of one service: the process's
    open-file limit (C{RLIMIT_NOFILE}) less L{FD_HEADROOM}, shared by
    C{services} services, so that accepting never runs out of descriptors.
    """
    try:
        import resource
    except ImportError:  # not on POSIX
        return 1000
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - FD_HEADROOM) // max(1, services))


def peer_key(host: Optional[str]) -> Optional[str]:
    """
    What the per-peer limit counts: the IPv4 address, or the /64 network of
    an IPv6 address (one host usually holds a whole /64).
    """
    if host is None or ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class TokenBucket:
    """
    Allow C{rate} lines a second on average, in bursts of up to C{burst}.
    """

    __slots__ = ("rate", "burst", "now", "tokens", "last")

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.now = now
        self.tokens = burst
        self.last = now()

    def _refill(self) -> None:
        now = self.now()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self) -> bool:
        """
        Take a token if there is one; False means over the limit.
        """
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait(self) -> float:
        """
        Seconds until a token is there.
        """
        self._refill()
        return max(0.0, (1 - self.tokens) / self.rate)


def tcp_idle(transport: Any) -> bool:
    """
    Whether the plain TCP C{transport} (a L{tcp.Connection}) is open and
    has nothing waiting to be sent, so that a write may go straight to the
    socket without overtaking anything.

    This reads two private attributes of Twisted's L{FileDescriptor}
    (C{dataBuffer}, C{_tempDataLen}); C{tests.test_faults.TcpIdleTests}
    fails if Twisted's buffering changes under it.
    """
    return not (
        transport.dataBuffer
        or transport._tempDataLen
        or transport.disconnecting
        or transport.disconnected
    )


def no_delay(transport: Any) -> None:
    """
    Turn off Nagle's algorithm on C{transport}'s socket, if it is TCP (or
    TLS over TCP).
    """
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    overTcp = isinstance(transport.getHost(), (IPv4Address, IPv6Address))
    if setTcpNoDelay is not None and overTcp:
        setTcpNoDelay(True)


def send_now(transport: Any, data: bytes) -> bytes:
    """
    Send what the socket of the plain TCP C{transport} takes of C{data} at
    once, in one system call, and return the rest.  (Twisted's
    C{writeSomeData} sends 128 KiB at most a call.)  On any error, send
    nothing: C{transport.write} then meets the error and closes the
    connection as Twisted does.
    """
    try:
        sent = transport.getHandle().send(data)
    except OSError:  # full (EAGAIN), or the connection is lost
        return data
    return data[sent:]


def default_reactor() -> Any:
    """
    The global reactor, imported only when first needed, so that importing
    sockproto installs no reactor (twistd and trial install their own).
    """
    from twisted.internet import reactor

    return reactor


class ServiceStats:
    """
    What a service counts, for C{--metrics}: plain integers, added to where
    things happen (once per read, write or event; never per byte).

    @ivar refused: refused connections by reason (C{full}, C{per_peer},
        C{too_fast}).
    @ivar drops: lines or clients dropped by reason (C{line_too_long},
        C{rate_limit}: bursts slowed by fake lag, C{overflow}: excess
        floods, C{slow_reader}).
    """

    __slots__ = ("accepted", "refused", "bytesIn", "bytesOut", "timeouts", "aborts")

    def __init__(self) -> None:
        self.accepted = 0
        self.refused: Dict[str, int] = {}
        self.bytesIn = 0
        self.bytesOut = 0
        self.timeouts = 0
        self.aborts = 0

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


@implementer(IHandshakeListener)
class ServiceProtocol(Protocol, TimeoutMixin):
    """
    Base class of sockproto's server protocols.

    A connection is I{ready} once it can carry data: at once on plain TCP
    and UNIX sockets, once the handshake is done on TLS.  A TLS handshake
    that does not finish within L{handshakeTimeout} seconds is dropped.
    Once the connection is lost, nothing is written to it any more.

    @ivar peerHost: the peer's host.
    @ivar peerKey: what the per-peer limit counts (L{peer_key}).
    """

    log = SafeLogger()
    factory: "ServiceFactory"
    transport: Any  # a TCP, TLS or UNIX transport: also a consumer and producer
    peerHost: Optional[str] = None
    peerKey: Optional[str] = None
    abortDelay = 10.0
    """Seconds a closing connection may take to flush before it is aborted."""
    handshakeTimeout = 30.0
    """Seconds a TLS client has to finish its handshake."""
    ready = False
    """True once the connection can carry data (see L{connectionReady})."""

    _abortCall: Optional[IDelayedCall] = None

    _eager = False

    noDelay = True
    """
    Send small writes at once (C{TCP_NODELAY}), as asyncio does: what a
    protocol writes is already whole (a line, a batch, an echo), and
    Nagle's algorithm would hold its last partial segment until the peer
    acknowledges the previous one.
    """

    def connectionMade(self) -> None:
        """
        Record the peer, tell the factory, and start the idle timer (the
        handshake timer on TLS).
        """
        # Plain TCP only: TLS and other transports keep their own buffers.
        writeSomeData = getattr(type(self.transport), "writeSomeData", None)
        self._eager = writeSomeData is tcp.Connection.writeSomeData
        if self.noDelay:
            no_delay(self.transport)
        host = getattr(self.transport.getPeer(), "host", None)
        # Interned: thousands of connections from one host share one string.
        self.peerHost = sys.intern(host) if isinstance(host, str) else None
        key = peer_key(self.peerHost)
        self.peerKey = sys.intern(key) if key is not None else None
        self.factory.connectionOpened(self)
        if ISSLTransport.providedBy(self.transport):
            self.setTimeout(self.handshakeTimeout)
            self._watchFirstBytes()
        else:
            self._ready()

    def _watchFirstBytes(self) -> None:
        # A TLS client starts with a handshake record (byte 0x16).  Anything
        # else is a plain client on a TLS port: TLS would drop it without a
        # word, so answer in plain text (as nginx does for HTTP on HTTPS).
        tls = self.transport
        raw = getattr(tls, "transport", None)
        receive = getattr(tls, "dataReceived", None)
        if raw is None or receive is None:
            return

        def firstBytes(data: bytes) -> None:
            del tls.dataReceived  # back to the class's method
            if data[:1] == b"\x16":
                receive(data)
            else:
                self.notTLS(raw)

        tls.dataReceived = firstBytes

    def notTLS(self, raw: Any) -> None:
        """
        Called when a client that does not speak TLS connects to a TLS
        port, with the plain transport below TLS: log it, answer with the
        factory's C{notTLSMessage}, and close.
        """
        self.log.info(
            "{service}: {peer} does not speak TLS on a TLS port: closing",
            service=self.factory.serviceName,
            peer=self.peer,
        )
        message = self.factory.notTLSMessage
        if message:
            raw.write(message)
        raw.loseConnection()

    def handshakeCompleted(self) -> None:
        """
        Called by a TLS transport once its handshake is done.
        """
        if self.connected and not self.ready:
            self._ready()

    def _ready(self) -> None:
        self.ready = True
        self.setTimeout(self.factory.timeout)
        self.connectionReady()

    def connectionReady(self) -> None:
        """
        Called once the connection can carry data: right after
        C{connectionMade}, or once the TLS handshake is done.  Override to
        greet the client.
        """

    @property
    def peer(self) -> str:
        """
        The peer's address as text, for log lines (made when asked, so that
        idle connections do not each keep a copy).
        """
        if self.transport is None:
            return "(not connected)"
        return format_address(self.transport.getPeer(), self.transport)

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        """
        Schedule C{f} on the factory's clock (L{TimeoutMixin} uses this).
        """
        return self.factory.clock.callLater(delay, f, *args)

    def send(self, data: bytes) -> None:
        """
        Write C{data} to the transport, unless the connection is gone.  On
        plain TCP, when nothing is queued before it, send what the socket
        takes at once and buffer only the rest: that saves the trip through
        the reactor (register for writing, wake up, send, unregister) that
        every buffered write costs.
        """
        if not self.connected:
            return
        self.factory.stats.bytesOut += len(data)
        transport = self.transport
        if self._eager and tcp_idle(transport):
            data = send_now(transport, data)
            if not data:
                return
        transport.write(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        """
        Mark the connection gone, stop the timers and tell the factory.
        Subclasses call this first, then do what may fail.
        """
        self.connected = 0
        self.setTimeout(None)
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        self.factory.connectionClosed(self, reason)

    def timeoutConnection(self) -> None:
        """
        Called when the peer has said nothing for C{factory.timeout} seconds,
        or has not finished its TLS handshake in L{handshakeTimeout}.
        """
        self.factory.stats.timeouts += 1
        what = "idle connection" if self.ready else "unfinished TLS handshake"
        self.log.info(
            "{service} closing {what} from {peer}",
            service=self.factory.serviceName,
            what=what,
            peer=self.peer,
        )
        self.closeConnection()

    def shutdownConnection(self) -> None:
        """
        Called when the service stops; override to say goodbye first.
        """
        self.closeConnection()

    def closeConnection(self) -> None:
        """
        Close the connection once pending output is written, or abort it if
        that takes longer than L{abortDelay} (the peer stopped reading or
        vanished).
        """
        if not self.connected:
            return
        self.transport.loseConnection()
        if self._abortCall is None:
            self._abortCall = self.callLater(self.abortDelay, self.abortConnection)

    def abortConnection(self) -> None:
        """
        Close the connection at once, dropping what it has not sent.
        """
        self.factory.stats.aborts += 1
        self.transport.abortConnection()


class RefusingProtocol(Protocol):
    """
    Sent to a connection the factory will not serve: writes one line, closes.
    """

    transport: Any

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        self.transport.write(self.message)
        self.transport.loseConnection()


class ServiceFactory(ServerFactory):
    """
    Base class of sockproto's server factories.

    @ivar connections: the protocols of the open connections.
    @ivar maxConnections: how many connections are served at once; 0 means
        no limit.  Default: L{default_max_connections}.
    @ivar maxPerPeer: how many connections one peer address (one IPv6 /64)
        may have open at once, and open in a burst (then that many every
        L{peerRefill} seconds); 0 means no limit.  Default:
        L{DEFAULT_MAX_PER_PEER}.
    @ivar timeout: seconds of silence after which a connection is closed,
        or L{None} for never.
    """

    log = SafeLogger()
    noisy = False  # the service logs "listening on" itself
    protocol = ServiceProtocol  # type: ignore[assignment]
    serviceName = "sockproto"
    fullMessage: Optional[bytes] = None
    """A line sent to a connection refused by L{maxConnections}, or None."""
    perPeerMessage: Optional[bytes] = None
    """A line sent to a connection refused by L{maxPerPeer}, or None."""
    notTLSMessage: Optional[bytes] = None
    """A line sent in plain text to a client that does not speak TLS on a
    TLS port, or None."""
    plainMessage: Optional[bytes] = None
    """A line sent to a TLS client on a plain port (whose first bytes are a
    TLS handshake record), or None."""
    refusalLogInterval = 10.0
    """Seconds between two log lines about refused connections of one kind."""
    peerRefill = 10.0
    """A peer may open L{maxPerPeer} new connections in a burst, and then
    that many again every this many seconds."""

    timeout: Optional[float] = None
    maxPerPeer = DEFAULT_MAX_PER_PEER

    def __init__(
        self,
        *,
        maxConnections: Optional[int] = None,
        maxPerPeer: Optional[int] = None,
        timeout: Any = DEFAULT,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        """
        Every argument left out takes the class's default: the class
        attributes are the one place where a service's defaults live (its
        options read them too).  C{timeout=None} means never.
        """
        if maxConnections is None:
            maxConnections = default_max_connections()
        self.maxConnections = maxConnections
        if maxPerPeer is not None:
            self.maxPerPeer = maxPerPeer
        self.perPeer: Dict[Optional[str], int] = {}
        if timeout is not DEFAULT:
            self.timeout = timeout
        self.clock = clock if clock is not None else default_reactor()
        self.connections: Set[ServiceProtocol] = set()
        self._closing: List[Deferred[None]] = []
        self._refusals: Dict[str, Tuple[float, int]] = {}
        self._arrivals: Dict[str, TokenBucket] = {}
        self.stats = ServiceStats()
        self.drops: Dict[str, int] = {}

    def buildProtocol(self, addr: Any) -> Optional[Protocol]:
        """
        Build a protocol, or refuse the connection when the service is full
        or the peer has too many connections already.
        """
        if self.maxConnections and len(self.connections) >= self.maxConnections:
            return self.refuseConnection(addr)
        if self.maxPerPeer:
            key = peer_key(getattr(addr, "host", None))
            if key is not None and self.perPeer.get(key, 0) >= self.maxPerPeer:
                return self.refusePeer(addr)
            if key is not None and not self._arrival(key):
                return self.refuseThrottled(addr)
        protocol: ServiceProtocol = self.protocol()  # type: ignore[misc]
        protocol.factory = self
        return protocol

    def _arrival(self, key: str) -> bool:
        """
        Count a new connection from C{key}; False if it comes too fast.
        """
        bucket = self._arrivals.get(key)
        if bucket is None:
            if len(self._arrivals) >= 10000:
                self._forgetQuietPeers()
            rate = self.maxPerPeer / self.peerRefill
            bucket = TokenBucket(rate, self.maxPerPeer, self.clock.seconds)
            self._arrivals[key] = bucket
        return bucket.take()

    def _forgetQuietPeers(self) -> None:
        for key, bucket in list(self._arrivals.items()):
            if bucket.wait() == 0 and bucket.tokens >= bucket.burst:
                del self._arrivals[key]

    def refuseThrottled(self, addr: Any) -> Optional[Protocol]:
        """
        Called when a peer opens connections faster than L{maxPerPeer}
        every L{peerRefill} seconds: closed at once, without a word.
        """
        self.stats.refuse("too_fast")
        self.logRefusal(
            "too fast",
            "{service}: {peer} connects too fast (more than {count} in"
            " {seconds:g} s): refusing",
            count=self.maxPerPeer,
            seconds=self.peerRefill,
            peer=format_address(addr),
        )
        return None

    def refuseConnection(self, addr: IAddress) -> Optional[Protocol]:
        """
        Called when a connection arrives while the service is full.
        """
        self.stats.refuse("full")
        self.logRefusal(
            "full",
            "{service} full ({count} connections): refusing {peer}",
            count=len(self.connections),
            peer=format_address(addr),
        )
        if self.fullMessage is None:
            return None
        return RefusingProtocol(self.fullMessage)

    def refusePeer(self, addr: Any) -> Optional[Protocol]:
        """
        Called when a peer already has C{maxPerPeer} connections open.
        """
        self.stats.refuse("per_peer")
        self.logRefusal(
            "per peer",
            "{service}: {peer} already has {count} open (the most one"
            " address may have): refusing",
            count=plural(self.maxPerPeer, "connection"),
            peer=format_address(addr),
        )
        if self.perPeerMessage is None:
            return None
        return RefusingProtocol(self.perPeerMessage)

    def logRefusal(self, kind: str, format: str, **fields: Any) -> None:
        """
        Log a refused connection, at most once every L{refusalLogInterval}
        seconds for each C{kind}, with how many went unlogged since.
        """
        now = self.clock.seconds()
        last, unlogged = self._refusals.get(kind, (-self.refusalLogInterval, 0))
        if now - last < self.refusalLogInterval:
            self._refusals[kind] = (last, unlogged + 1)
            return
        self._refusals[kind] = (now, 0)
        if unlogged:
            format += " ({unlogged} more refused {kind} since the last report)"
        self.log.warn(
            format, service=self.serviceName, unlogged=unlogged, kind=kind, **fields
        )

    def connectionOpened(self, protocol: ServiceProtocol) -> None:
        """
        Called by a protocol when its connection is made.
        """
        self.connections.add(protocol)
        self.stats.accepted += 1
        key = protocol.peerKey
        self.perPeer[key] = self.perPeer.get(key, 0) + 1
        self.log.info(
            "{service} connection from {peer}",
            service=self.serviceName,
            peer=protocol.peer,
        )

    def connectionClosed(self, protocol: ServiceProtocol, reason: Failure) -> None:
        """
        Called by a protocol when its connection is lost.
        """
        if protocol in self.connections:
            self.connections.discard(protocol)
            key = protocol.peerKey
            if self.perPeer.get(key, 0) <= 1:
                self.perPeer.pop(key, None)
            else:
                self.perPeer[key] -= 1
        self.log.info(
            "{service} connection from {peer} closed: {reason}",
            service=self.serviceName,
            peer=protocol.peer,
            reason=reason.getErrorMessage(),
        )
        if not self.connections:
            closing, self._closing = self._closing, []
            for d in closing:
                d.callback(None)

    def drop(self, reason: str) -> None:
        """
        Count a line or a client dropped (or slowed) for C{reason}.
        """
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def supportServices(self) -> List[IService]:
        """
        Services the factory needs while any connection is open (the
        chat's link to Redis): started before the ports, stopped after the
        last connection closed.
        """
        return []

    def closeAll(self) -> "Deferred[None]":
        """
        Close every open connection; the result fires when all are closed.
        """
        if not self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closing.append(d)
        for protocol in list(self.connections):
            protocol.shutdownConnection()
        return d
