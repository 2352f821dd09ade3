# -*- test-case-name: tests.test_coucou -*-
"""
The course's message service: a client connects, writes a message
("coucou") and closes; the server prints it.

A message ends at end of stream, or at a line end for people typing into
telnet or nc, each line being one message.
"""

import queue
import sys
import threading
from typing import IO, Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from .lines import LineFactory, LineProtocol
from .logs import SafeLogger
from .options import ServiceOptions, count, rate, timeout_option
from .server import ServiceFactory, default_reactor
from .text import decode_line

__all__ = [
    "CoucouClientProtocol",
    "CoucouOptions",
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
        characters; C{peer} is the sender's address as text.  It must not
        block: it runs in the reactor, which serves every client.
        """


@implementer(ICoucouSink)
class StreamSink:
    """
    Print each message on a line of its own, after its sender's address in
    brackets (C{[127.0.0.1:40000] coucou}): a message can then never pass
    for a log line, which starts with a date.

    The reactor never waits for the stream: lines go through a queue of
    L{maxPending} lines to a thread that writes them.  When the stream is
    slower than the messages (a slow pipe, a terminal paused with Ctrl-S),
    lines past that are dropped and counted in L{dropped}, and the count is
    logged.

    @ivar stream: the text stream to print to; L{None} means the process's
        real standard output, even when twistd has redirected C{sys.stdout}
        to its log.
    """

    log = SafeLogger()
    maxPending = 1000

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self.stream = stream
        self.dropped = 0
        self._reported = 0
        self._lines: queue.Queue[Optional[str]] = queue.Queue(self.maxPending)
        self._thread: Optional[threading.Thread] = None

    def formatMessage(self, message: str, peer: str) -> str:
        """
        The line printed for C{message} from C{peer}, without its line end.
        """
        return f"[{peer}] {message}"

    def messageReceived(self, message: str, peer: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write, name="coucou output", daemon=True
            )
            self._thread.start()
        try:
            self._lines.put_nowait(self.formatMessage(message, peer) + "\n")
        except queue.Full:
            self.dropped += 1
            if self.dropped >= 2 * self._reported:
                self._reported = self.dropped
                self.log.warn(
                    "coucou: standard output is not keeping up: {dropped}"
                    " messages not printed so far",
                    dropped=self.dropped,
                )

    def _write(self) -> None:
        while True:
            line = self._lines.get()
            try:
                if line is None:
                    return
                stream = self.stream if self.stream is not None else sys.__stdout__
                if stream is not None:
                    stream.write(line)
                    stream.flush()
            except (OSError, ValueError):
                self.dropped += 1  # a closed or broken stream: nothing to do
            finally:
                self._lines.task_done()

    def flush(self) -> None:
        """
        Wait until every queued line is written (for tests and shutdown).
        """
        if self._thread is not None:
            self._lines.join()

    def close(self, timeout: float = 2.0) -> None:
        """
        Let the writer finish the queued lines, waiting at most C{timeout}
        seconds, then stop it.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._lines.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)


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
class CoucouServerProtocol(LineProtocol):
    """
    Receive messages: each line, and whatever is left at end of stream, at
    most C{factory.rateLimit} a second.
    """

    factory: "CoucouServerFactory"
    unterminatedFactor = 1  # a message longer than the limit is refused at once

    def readConnectionLost(self) -> None:
        """
        The client shut down its sending side: its last message is complete.
        """
        self.inputEnded()

    def writeConnectionLost(self) -> None:
        self.closeConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if reason.check(ConnectionDone) and not self.transport.disconnecting:
            # The course's client closes without a shutdown: what it wrote
            # before closing is its message.  A reset connection's is not.
            self.handleEvents(self.parser.finish())
        super().connectionLost(reason)

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

    def lineTooLong(self, length: int) -> None:
        self.messageTooLong()

    def overflow(self) -> None:
        self.messageTooLong()

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
        self.send(b"error: message longer than %d bytes\n" % (limit,))
        self.closeConnection()

    def excessFlood(self) -> None:
        self.send(b"error: too many messages too fast: disconnecting\n")
        super().excessFlood()

    def timeoutConnection(self) -> None:
        if self.ready:
            self.send(b"error: timed out waiting for a message\n")
        super().timeoutConnection()


class CoucouServerFactory(LineFactory):
    """
    Serve L{CoucouServerProtocol}, printing messages to standard output.

    @ivar sink: the L{ICoucouSink} that receives every message.
    @ivar maxSize: the longest message accepted, in bytes (the course's
        buffer held 140).
    @ivar rateLimit: messages a second per client (0: no limit); faster
        clients are slowed down, not dropped, unless they flood.
    """

    protocol = CoucouServerProtocol  # type: ignore[assignment]
    serviceName = "coucou"
    fullMessage = b"error: server full, try again later\n"
    perPeerMessage = b"error: too many connections from your address\n"
    plainMessage = b"error: this port speaks plain text, not TLS\n"
    notTLSMessage = (
        b"error: this port speaks TLS: use a TLS client (sockproto send --tls)\n"
    )

    maxSize = 140
    rateLimit = 5.0
    timeout: Optional[float] = 60.0

    def __init__(
        self,
        sink: Optional[ICoucouSink] = None,
        maxSize: Optional[int] = None,
        *,
        rateLimit: Optional[float] = None,
        **limits: Any,
    ) -> None:
        """
        Arguments left out take the class's defaults.

        @param limits: C{maxConnections}, C{maxPerPeer}, C{timeout},
            C{clock}: see L{sockproto.base.ServiceFactory}.
        """
        super().__init__(**limits)
        self.sink: ICoucouSink = sink if sink is not None else StreamSink()
        if maxSize is not None:
            self.maxSize = maxSize
        self.maxLineLength = self.maxSize
        if rateLimit is not None:
            self.rateLimit = rateLimit

    def stopFactory(self) -> None:
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()


@implementer(IHalfCloseableProtocol)
class CoucouClientProtocol(Protocol):
    """
    The course's client: write the message, shut down the sending side,
    and wait for the server to close.

    @ivar done: fires with what the server sent back once it closes the
        connection cleanly, or fails with the reason the connection was lost.
    """

    transport: Any
    quietPeriod = 0.5
    """Over TLS, seconds of silence from the server after which the
    message is over and the client closes."""
    _quietCall: Optional[IDelayedCall] = None

    def __init__(self, message: bytes, clock: Optional[IReactorTime] = None) -> None:
        self.message = message
        self.clock = clock if clock is not None else default_reactor()
        self.received: List[bytes] = []
        self.done: Deferred[bytes] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionMade(self) -> None:
        self.transport.write(self.message)
        if ISSLTransport.providedBy(self.transport):
            # TLS has no half-close, and its close (close_notify) makes the
            # peer's reply unreadable: close once the server has been quiet.
            self._quietCall = self.clock.callLater(
                self.quietPeriod, self.transport.loseConnection
            )
        else:
            self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        if self._quietCall is not None and self._quietCall.active():
            self._quietCall.reset(self.quietPeriod)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if self._quietCall is not None and self._quietCall.active():
            self._quietCall.cancel()
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
    protocol = CoucouClientProtocol(message, clock)
    connecting = endpoint.connect(Factory.forProtocol(lambda: protocol))
    result: Deferred[bytes] = connecting.addCallback(lambda _: protocol.done)
    if timeout is not None:
        result.addTimeout(timeout, clock if clock is not None else default_reactor())
    return result


class CoucouOptions(ServiceOptions):
    """
    Options of the coucou message service.
    """

    serviceName = "coucou"
    defaultEndpoint = "tcp:12345"
    description = "Run only coucou: print every message received."
    longdesc = (
        "Print each message received on standard output, after the sender's"
        " address: a message ends at a line end or at end of stream."
        " Default: tcp:12345."
    )
    optParameters = [
        [
            "max-size",
            None,
            CoucouServerFactory.maxSize,
            "Longest message accepted, in bytes (1 or more)",
            count("max-size", 1),
        ],
        [
            "rate-limit",
            None,
            CoucouServerFactory.rateLimit,
            "Messages a second per client; 0: no limit",
            rate("rate-limit"),
        ],
        timeout_option(CoucouServerFactory, "Drop clients silent"),
    ]

    def buildFactory(self) -> ServiceFactory:
        return CoucouServerFactory(
            maxSize=self["max-size"], rateLimit=self["rate-limit"], **self.limits()
        )
