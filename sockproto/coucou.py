# -*- test-case-name: tests.test_coucou -*-
"""
The course's message service: a client connects, writes a message
("coucou") and closes; the server prints it.

A message ends at end of stream, or at a line end for people typing into
telnet or nc, each line being one message.
"""

import sys
from typing import IO, Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from .base import ServiceFactory, ServiceProtocol
from .lines import Event, LineParser, LineTooLong, Overflow
from .text import decode_line

__all__ = [
    "CoucouClientProtocol",
    "CoucouServerFactory",
    "CoucouServerProtocol",
    "ICoucouSink",
    "MessageList",
    "StreamSink",
    "send_message",
]


class ICoucouSink(Interface):
    """
    Where the coucou server puts the messages it receives.
    """

    def messageReceived(message: str, peer: str) -> None:
        """
        Called once per message, already decoded and stripped of control
        characters; C{peer} is the sender's address as text.
        """


@implementer(ICoucouSink)
class StreamSink:
    """
    Print each message on a line of its own, as the course's server does.

    @ivar stream: the text stream to print to; L{None} means the process's
        real standard output, even when twistd has redirected C{sys.stdout}
        to its log.
    """

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self.stream = stream

    def messageReceived(self, message: str, peer: str) -> None:
        stream = self.stream if self.stream is not None else sys.__stdout__
        if stream is None:
            return
        stream.write(message + "\n")
        stream.flush()


@implementer(ICoucouSink)
class MessageList:
    """
    Keep every message, with its sender, in L{messages}: for tests.
    """

    def __init__(self) -> None:
        self.messages: List[str] = []
        self.peers: List[str] = []

    def messageReceived(self, message: str, peer: str) -> None:
        self.messages.append(message)
        self.peers.append(peer)


@implementer(IHalfCloseableProtocol)
class CoucouServerProtocol(ServiceProtocol):
    """
    Receive messages: each line, and whatever is left at end of stream.
    """

    factory: "CoucouServerFactory"

    def connectionMade(self) -> None:
        super().connectionMade()
        limit = self.factory.maxSize
        self.parser = LineParser(limit, limit)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._handle(self.parser.feed(data))

    def readConnectionLost(self) -> None:
        """
        The client shut down its sending side: its last message is complete.
        """
        self._handle(self.parser.finish())
        self.closeConnection()

    def writeConnectionLost(self) -> None:
        self.closeConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if reason.check(ConnectionDone) and not self.transport.disconnecting:
            # The course's client closes without a shutdown: what it wrote
            # before closing is its message.  A reset connection's is not.
            self._handle(self.parser.finish())
        super().connectionLost(reason)

    def _handle(self, events: List[Event]) -> None:
        for event in events:
            if self.transport.disconnecting:
                return
            if isinstance(event, bytes):
                self.lineReceived(event)
            elif isinstance(event, (LineTooLong, Overflow)):
                self.messageTooLong()

    def lineReceived(self, line: bytes) -> None:
        """
        Called with the raw bytes of each message; blank ones are ignored.
        """
        message = decode_line(line).strip()
        if message:
            self.messageReceived(message)

    def messageReceived(self, message: str) -> None:
        """
        Called with each non-blank message: log it and hand it to the sink.
        """
        self.log.info(
            "coucou message from {peer}: {message!r}", peer=self.peer, message=message
        )
        self.factory.sink.messageReceived(message, self.peer)

    def messageTooLong(self) -> None:
        """
        Called when a message is over C{factory.maxSize}: say so and close.
        """
        limit = self.factory.maxSize
        self.log.warn(
            "coucou message from {peer} over {limit} bytes: disconnecting",
            peer=self.peer,
            limit=limit,
        )
        self.transport.write(b"error: message longer than %d bytes\n" % (limit,))
        self.closeConnection()

    def timeoutConnection(self) -> None:
        self.transport.write(b"error: timed out waiting for a message\n")
        super().timeoutConnection()


class CoucouServerFactory(ServiceFactory):
    """
    Serve L{CoucouServerProtocol}, printing messages to standard output.

    @ivar sink: the L{ICoucouSink} that receives every message.
    @ivar maxSize: the longest message accepted, in bytes (the course's
        buffer held 140).
    """

    protocol = CoucouServerProtocol  # type: ignore[assignment]
    serviceName = "coucou"
    fullMessage = b"error: server full, try again later\n"
    perPeerMessage = b"error: too many connections from your address\n"

    def __init__(
        self,
        sink: Optional[ICoucouSink] = None,
        maxSize: int = 140,
        *,
        timeout: Optional[float] = 60.0,
        **limits: Any,
    ) -> None:
        """
        @param limits: C{maxConnections}, C{maxPerPeer}, C{clock}: see
            L{ServiceFactory}.
        """
        super().__init__(timeout=timeout, **limits)
        self.sink: ICoucouSink = sink if sink is not None else StreamSink()
        self.maxSize = maxSize


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@implementer(IHalfCloseableProtocol)
class CoucouClientProtocol(Protocol):
    """
    The course's client: write the message, shut down the sending side,
    and wait for the server to close.

    @ivar done: fires with what the server sent back once it closes the
        connection cleanly, or fails with the reason the connection was lost.
    """

    transport: Any

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.received: List[bytes] = []
        self.done: Deferred[bytes] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionMade(self) -> None:
        self.transport.write(self.message)
        if ISSLTransport.providedBy(self.transport):
            # TLS has no half-close: close_notify ends the message.
            self.transport.loseConnection()
        else:
            self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if self.done.called:
            return
        if reason.check(ConnectionDone):
            self.done.callback(b"".join(self.received))
        else:
            self.done.errback(reason)


def send_message(
    endpoint: IStreamClientEndpoint,
    message: bytes = b"coucou",
    *,
    timeout: Optional[float] = None,
    clock: Optional[IReactorTime] = None,
) -> "Deferred[bytes]":
    """
    Connect to C{endpoint}, send C{message}, shut down the sending side and
    wait until the server closes the connection.

    @param timeout: seconds for the whole exchange, or L{None}.
    @param clock: what measures C{timeout}; the global reactor by default.
    @return: a Deferred that fires with whatever the server sent back, or
        fails with the connection error, or with
        L{twisted.internet.defer.TimeoutError} after C{timeout} seconds.
    """
    protocol = CoucouClientProtocol(message)
    connecting = endpoint.connect(Factory.forProtocol(lambda: protocol))
    result: Deferred[bytes] = connecting.addCallback(lambda _: protocol.done)
    if timeout is not None:
        result.addTimeout(timeout, clock if clock is not None else _reactor())
    return result
