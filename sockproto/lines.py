# -*- test-case-name: tests.test_lines -*-
"""
Line services, shared by coucou and chat: a line splitter with bounded
memory, and a protocol base class that rate-limits lines.

Unlike L{twisted.protocols.basic.LineReceiver}, the splitter accepts both LF
and CRLF, it never throws away the lines that follow a line that was too
long, and it gives the same result however the byte stream is cut into
chunks.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Iterable, List, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.python.failure import Failure

from .server import ServiceFactory, ServiceProtocol, TokenBucket

__all__ = [
    "LineFactory",
    "LineParser",
    "LineProtocol",
    "LineTooLong",
    "Overflow",
    "Rated",
    "TokenBucket",
]


@dataclass(frozen=True)
class LineTooLong:
    """
    A line was longer than the limit; its bytes were dropped.

    @ivar length: how many bytes the line had, not counting the LF.
    """

    length: int


@dataclass(frozen=True)
class Overflow:
    """
    The peer sent far more than a line without any line end.  Nothing more
    will be parsed: the connection should be closed.
    """


Event = Union[bytes, LineTooLong, Overflow]


class LineParser:
    """
    Split a byte stream into lines.

    A line ends with LF; a CR just before the LF is removed.  A line longer
    than C{maxLength} bytes (counting that CR) gives a L{LineTooLong} instead
    of its bytes, and at most C{maxLength + 1} bytes of it are ever held.
    Once C{maxUnterminated} bytes have arrived without a line end, the parser
    gives one L{Overflow} and ignores everything after it.
    """

    __slots__ = ("maxLength", "maxUnterminated", "_buffer", "_discarded", "overflowed")

    def __init__(self, maxLength: int, maxUnterminated: int) -> None:
        self.maxLength = maxLength
        self.maxUnterminated = max(maxUnterminated, maxLength)
        self._buffer = b""
        self._discarded = 0  # bytes of an over-long line dropped so far
        self.overflowed = False

    @property
    def pending(self) -> bytes:
        """
        The bytes of the unfinished line, if it is not too long already.
        """
        return self._buffer

    @property
    def discarding(self) -> bool:
        """
        True while the unfinished line is already known to be too long.
        """
        return self._discarded > 0

    def feed(self, data: bytes) -> List[Event]:
        """
        Take the next chunk of the stream; return the lines it completes.
        """
        if self.overflowed:
            return []
        if self._discarded:
            events: List[Event] = []
            data = self._skipLongLine(data, events)
            if not data:
                return events
            return events + self._split(data)
        return self._split(data)

    def finish(self) -> List[Event]:
        """
        The stream ended: return what is left as a last line, if anything.
        """
        if self.overflowed:
            return []
        if self._discarded:
            events: List[Event] = [LineTooLong(self._discarded)]
        elif self._buffer:
            events = [self._buffer]
        else:
            events = []
        self._buffer = b""
        self._discarded = 0
        return events

    def _split(self, data: bytes) -> List[Event]:
        lines = (self._buffer + data).split(b"\n")
        rest = lines.pop()
        self._buffer = b""
        limit = self.maxLength
        events: List[Event] = []
        for line in lines:
            if len(line) <= limit:
                events.append(line[:-1] if line.endswith(b"\r") else line)
            elif self._tooLong(len(line), events):
                return events
        if len(rest) <= limit:
            self._buffer = rest
        else:
            self._discarded = len(rest)
            self._checkOverflow(events)
        return events

    def _skipLongLine(self, data: bytes, events: List[Event]) -> bytes:
        end = data.find(b"\n")
        if end == -1:
            self._discarded += len(data)
            self._checkOverflow(events)
            return b""
        length, self._discarded = self._discarded + end, 0
        if self._tooLong(length, events):
            return b""
        return data[end + 1 :]

    def _tooLong(self, length: int, events: List[Event]) -> bool:
        """
        Record a line of C{length} bytes that is over the limit; return True
        if it is so long that parsing stops.
        """
        if length > self.maxUnterminated:
            events.append(Overflow())
            self.overflowed = True
            return True
        events.append(LineTooLong(length))
        return False

    def _checkOverflow(self, events: List[Event]) -> None:
        if self._discarded > self.maxUnterminated:
            events.append(Overflow())
            self.overflowed = True
            self._discarded = 0


TLS_HANDSHAKE = b"\x16"
"""The first byte of a TLS client's first record; no line starts with it."""


def burst_for(rate: float) -> float:
    """
    The burst allowed at C{rate} lines a second: two seconds' worth, at
    least 5 lines.
    """
    return max(2 * rate, 5.0)


class LineFactory(ServiceFactory):
    """
    Base class of the factories of L{LineProtocol}s.

    @ivar maxLineLength: the longest line accepted, in bytes.
    @ivar rateLimit: lines a second per connection (0: no limit).
    """

    maxLineLength = 512
    rateLimit = 0.0


class Rated:
    """
    Base class of the events a subclass puts among the lines that count
    against the rate limit as a line does (a WebSocket ping, a fragment),
    handled by L{LineProtocol.otherEvent} in their turn.

    @ivar cost: what it counts for, in bytes, against L{LineProtocol.maxQueued}
        while it waits.
    """

    __slots__ = ("cost",)

    def __init__(self, cost: int) -> None:
        self.cost = cost


def _rated(event: object) -> bool:
    return type(event) is bytes or isinstance(event, Rated)


def _cost(event: object) -> int:
    # A line costs its bytes and its line end: blank lines count too.
    if type(event) is bytes:
        return len(event) + 1
    return event.cost if isinstance(event, Rated) else 1


class LineProtocol(ServiceProtocol):
    """
    A protocol of lines, each ending with LF or CRLF, rate-limited.

    Lines over C{factory.rateLimit} a second (in bursts of L{burst_for})
    are not dropped: the connection stops being read until the next token
    is there ("fake lag", as IRC servers do), and the lines already read
    wait in a queue.  L{throttled} is called once per such burst.  A queue
    longer than L{maxQueued} bytes means the client keeps sending far over
    its limit: L{excessFlood} is called.  Every line counts, blank ones
    included.  Only complete lines reset the idle timer.
    """

    factory: LineFactory
    unterminatedFactor = 16
    """How many times the line limit may arrive without a line end."""
    queuedFactor = 16
    """How many times the line limit may wait for the rate limit."""

    _queue: Optional[Deque[Event]] = None
    _queued = 0
    _lagCall: Optional[IDelayedCall] = None
    _closeWhenDone = False
    _answering = False

    # Made on first use: a connection that never sends keeps neither (idle
    # connections are most of a chat's memory).
    _parser: Optional[LineParser] = None
    _bucket: Optional[TokenBucket] = None

    @property
    def parser(self) -> LineParser:
        """
        The connection's L{LineParser}.
        """
        if self._parser is None:
            limit = self.factory.maxLineLength
            self._parser = LineParser(limit, limit * self.unterminatedFactor)
        return self._parser

    @property
    def bucket(self) -> Optional[TokenBucket]:
        """
        The connection's rate limit (a full bucket when first used), or
        None when there is no limit.
        """
        rate = self.factory.rateLimit
        if self._bucket is None and rate:
            clock = self.factory.clock
            self._bucket = TokenBucket(rate, burst_for(rate), clock.seconds)
        return self._bucket

    @property
    def maxQueued(self) -> int:
        """
        Bytes of lines that may wait for the rate limit before the client
        is disconnected for flooding.
        """
        return self.factory.maxLineLength * self.queuedFactor

    _firstData = True

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.bytesIn += len(data)
        if self._firstData and data:
            self._firstData = False
            if data[:1] == TLS_HANDSHAKE and not ISSLTransport.providedBy(
                self.transport
            ):
                self.parser.overflowed = True  # parse nothing more
                return self.tlsOnPlainPort()
        if self.bucket is not None and self._flooding(data):
            self._dropQueue()
            self.parser.overflowed = True  # parse nothing more
            self.factory.drop("overflow")
            self.excessFlood()
            return
        self.handleEvents(self.parser.feed(data))

    def _flooding(self, data: bytes) -> bool:
        # More lines in one read than the rate limit and the queue together
        # could take: a flood, found without the cost of parsing it.
        assert self.bucket is not None
        return data.count(b"\n") > self.bucket.tokens + self.maxQueued

    def handleEvents(self, events: Iterable[Event]) -> None:
        """
        Handle what the parser found, in order, at the allowed rate.
        """
        if self._queue is not None:
            return self._enqueue(events)
        events = list(events)
        for index, event in enumerate(events):
            if not self.connected or self.transport.disconnecting:
                return
            if _rated(event) and not self._take():
                self._startLag(events[index:])
                return
            self._handle(event)
            if self._answering:
                self._startWaiting(events[index + 1 :])
                return

    def waitFor(self, answer: "Deferred[Any]") -> None:
        """
        The line being handled is answered once C{answer} fires: the lines
        after it wait until then (queued, the connection paused, as for the
        rate limit), so that the replies to a client leave in the order of
        its commands.  C{answer}'s result is left as it is.
        """
        if answer.called:
            return
        self._answering = True

        def answered(result: object) -> object:
            self._answering = False
            if self._queue is not None and self._lagCall is None:
                self._drainQueue()
            elif self._queue is None and self._closeWhenDone and self.connected:
                self.closeConnection()
            return result

        answer.addBoth(answered)

    def _startWaiting(self, events: List[Event]) -> None:
        if self._queue is None:
            self._queue = deque()
            self.transport.pauseProducing()
        self._enqueue(events)

    def _take(self) -> bool:
        return self.bucket is None or self.bucket.take()

    def _handle(self, event: Event) -> None:
        if isinstance(event, bytes):
            self.resetTimeout()
            self.lineReceived(event)
        elif isinstance(event, LineTooLong):
            self.factory.drop("line_too_long")
            self.lineTooLong(event.length)
        elif isinstance(event, Overflow):
            self.factory.drop("overflow")
            self.overflow()
        else:
            self.otherEvent(event)

    def otherEvent(self, event: object) -> None:
        """
        Called, in order with the lines, with an event of a kind a
        subclass put among them (the WebSocket front end's binary
        messages); a L{Rated} one counts against the rate limit.
        """

    def _startLag(self, events: List[Event]) -> None:
        self._queue = deque()
        self.transport.pauseProducing()
        self.factory.drop("rate_limit")
        self.throttled()
        self._enqueue(events)
        if self._queue is not None:
            self._scheduleLag()

    def _enqueue(self, events: Iterable[Event]) -> None:
        queue = self._queue
        assert queue is not None
        limit = self.maxQueued
        for event in events:
            queue.append(event)
            self._queued += _cost(event)
            if self._queued > limit:
                self._dropQueue()
                self.factory.drop("overflow")
                self.excessFlood()
                return

    def _scheduleLag(self) -> None:
        assert self.bucket is not None
        self._lagCall = self.callLater(self.bucket.wait(), self._drainQueue)

    def _drainQueue(self) -> None:
        self._lagCall = None
        queue = self._queue
        while queue and self.connected and not self.transport.disconnecting:
            event = queue[0]
            if _rated(event) and not self._take():
                return self._scheduleLag()
            queue.popleft()
            self._queued -= _cost(event)
            self._handle(event)
            if self._answering:
                return  # the rest waits for the answer: see waitFor
        self._dropQueue()
        if self.connected and not self.transport.disconnecting:
            self.transport.resumeProducing()
            if self._closeWhenDone:
                self.closeConnection()

    def _dropQueue(self) -> int:
        """
        Forget the lines waiting for the rate limit; return how many bytes.
        """
        if self._lagCall is not None and self._lagCall.active():
            self._lagCall.cancel()
        self._lagCall = None
        dropped, self._queued, self._queue = self._queued, 0, None
        return dropped

    def inputEnded(self) -> None:
        """
        The peer will send no more: handle what is left, then close.
        """
        self._closeWhenDone = True
        self.handleEvents(self.parser.finish())
        if self._queue is None and not self._answering:
            self.closeConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        super().connectionLost(reason)
        dropped = self._dropQueue()
        if dropped:
            self.log.info(
                "{service}: {peer} closed with {dropped} bytes of lines still"
                " waiting for the rate limit: dropped",
                service=self.factory.serviceName,
                peer=self.peer,
                dropped=dropped,
            )

    # --- hooks ----------------------------------------------------------

    def tlsOnPlainPort(self) -> None:
        """
        Called when the first bytes on a plain port are a TLS handshake (a
        TLS client on the wrong port): none of it is read as lines.  Log
        it, answer with the factory's C{plainMessage}, and close.
        """
        self.factory.drop("tls_on_plain_port")
        self.log.info(
            "{service}: {peer} speaks TLS on a plain port: closing",
            service=self.factory.serviceName,
            peer=self.peer,
        )
        message = self.factory.plainMessage
        if message:
            self.send(message)
        self.closeConnection()

    def lineReceived(self, line: bytes) -> None:
        """
        Called with each line's bytes (without the line end), in order, at
        the allowed rate.
        """

    def lineTooLong(self, length: int) -> None:
        """
        Called when a line of C{length} bytes was over the limit and dropped.
        """

    def overflow(self) -> None:
        """
        Called when far too much arrived without a line end: disconnect.
        """
        self.closeConnection()

    def throttled(self) -> None:
        """
        Called when lines arrive over the rate limit: once per burst, as the
        connection stops being read.  Log it.
        """
        self.log.info(
            "{service}: {peer} is over the rate limit: reading paused",
            service=self.factory.serviceName,
            peer=self.peer,
        )

    def excessFlood(self) -> None:
        """
        Called when far more lines wait for the rate limit than it would
        let through soon: the client is flooding.  Disconnect it.
        """
        self.log.warn(
            "{service}: {peer} is flooding ({limit} bytes of lines over the"
            " rate limit): disconnecting",
            service=self.factory.serviceName,
            peer=self.peer,
            limit=self.maxQueued,
        )
        self.closeConnection()
