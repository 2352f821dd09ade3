# -*- test-case-name: tests.test_base -*-
"""
What every sockproto server shares: a factory that knows its open
connections, limits them and closes them all on shutdown, and a protocol
base class that logs, times out when idle and can be told to close.
"""

import sys
from typing import Any, Callable, Dict, List, Optional, Set

from twisted.internet import tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from .text import format_address

__all__ = ["ServiceFactory", "ServiceProtocol", "RefusingProtocol"]


def _default_clock() -> IReactorTime:
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


class ServiceProtocol(Protocol, TimeoutMixin):
    """
    Base class of sockproto's server protocols.

    @ivar peerHost: the peer's host, for the per-peer limit.
    """

    log = Logger()
    factory: "ServiceFactory"
    transport: Any  # a TCP, TLS or UNIX transport: also a consumer and producer
    peerHost: Optional[str] = None
    abortDelay = 10.0
    """Seconds a closing connection may take to flush before it is aborted."""

    _abortCall: Optional[IDelayedCall] = None

    _eager = False

    def connectionMade(self) -> None:
        """
        Record the peer, start the idle timer and tell the factory.
        """
        # Plain TCP only: TLS and other transports keep their own buffers.
        writeSomeData = getattr(type(self.transport), "writeSomeData", None)
        self._eager = writeSomeData is tcp.Connection.writeSomeData
        host = getattr(self.transport.getPeer(), "host", None)
        # Interned: thousands of connections from one host share one string.
        self.peerHost = sys.intern(host) if isinstance(host, str) else None
        self.setTimeout(self.factory.timeout)
        self.factory.connectionOpened(self)

    @property
    def peer(self) -> str:
        """
        The peer's address as text, for log lines (made when asked, so that
        idle connections do not each keep a copy).
        """
        if self.transport is None:
            return "(not connected)"
        return format_address(self.transport.getPeer())

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        """
        Schedule C{f} on the factory's clock (L{TimeoutMixin} uses this).
        """
        return self.factory.clock.callLater(delay, f, *args)

    def send(self, data: bytes) -> None:
        """
        Write C{data} to the transport.  On plain TCP, when nothing is queued
        before it, send what the socket takes at once and buffer only the
        rest: that saves the trip through the reactor (register for writing,
        wake up, send, unregister) that every buffered write costs.
        """
        transport = self.transport
        if self._eager and not (
            transport.dataBuffer or transport._tempDataLen or transport.disconnecting
        ):
            sent = transport.writeSomeData(data)
            if isinstance(sent, int):
                if sent == len(data):
                    return
                data = data[sent:]
            # else the connection is lost: write() below notices
        transport.write(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        """
        Stop the timers and tell the factory.
        """
        self.setTimeout(None)
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        self.factory.connectionClosed(self, reason)

    def timeoutConnection(self) -> None:
        """
        Called when the peer has said nothing for C{factory.timeout} seconds.
        """
        self.log.info(
            "{service} closing idle connection from {peer}",
            service=self.factory.serviceName,
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
        self.transport.loseConnection()
        if self._abortCall is None:
            self._abortCall = self.callLater(
                self.abortDelay, self.transport.abortConnection
            )


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
        no limit.
    @ivar maxPerPeer: how many connections one peer address may have open
        at once; 0 means no limit.
    @ivar timeout: seconds of silence after which a connection is closed,
        or L{None} for never.
    """

    log = Logger()
    noisy = False  # the service logs "listening on" itself
    protocol = ServiceProtocol  # type: ignore[assignment]
    serviceName = "sockproto"
    fullMessage: Optional[bytes] = None
    """A line sent to a connection refused by L{maxConnections}, or None."""
    perPeerMessage: Optional[bytes] = None
    """A line sent to a connection refused by L{maxPerPeer}, or None."""

    def __init__(
        self,
        *,
        maxConnections: int = 0,
        maxPerPeer: int = 0,
        timeout: Optional[float] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        self.maxConnections = maxConnections
        self.maxPerPeer = maxPerPeer
        self.perPeer: Dict[Optional[str], int] = {}
        self.timeout = timeout
        self.clock = clock if clock is not None else _default_clock()
        self.connections: Set[ServiceProtocol] = set()
        self._closing: List[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Optional[Protocol]:
        """
        Build a protocol, or refuse the connection when the service is full
        or the peer has too many connections already.
        """
        if self.maxConnections and len(self.connections) >= self.maxConnections:
            return self.refuseConnection(addr)
        host = getattr(addr, "host", None)
        crowded = self.perPeer.get(host, 0) >= self.maxPerPeer
        if self.maxPerPeer and host is not None and crowded:
            return self.refusePeer(addr)
        protocol: ServiceProtocol = self.protocol()  # type: ignore[misc]
        protocol.factory = self
        return protocol

    def refuseConnection(self, addr: IAddress) -> Optional[Protocol]:
        """
        Called when a connection arrives while the service is full.
        """
        self.log.warn(
            "{service} full ({count} connections): refusing {peer}",
            service=self.serviceName,
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
        self.log.warn(
            "{service}: {peer} already has {count} connections: refusing",
            service=self.serviceName,
            count=self.maxPerPeer,
            peer=format_address(addr),
        )
        if self.perPeerMessage is None:
            return None
        return RefusingProtocol(self.perPeerMessage)

    def connectionOpened(self, protocol: ServiceProtocol) -> None:
        """
        Called by a protocol when its connection is made.
        """
        self.connections.add(protocol)
        host = protocol.peerHost
        self.perPeer[host] = self.perPeer.get(host, 0) + 1
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
            host = protocol.peerHost
            if self.perPeer[host] <= 1:
                del self.perPeer[host]
            else:
                self.perPeer[host] -= 1
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
