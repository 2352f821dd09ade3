# -*- test-case-name: tests.test_lines -*-
"""
A line splitter with bounded memory, shared by coucou and chat.

Unlike L{twisted.protocols.basic.LineReceiver}, it accepts both LF and CRLF,
it never throws away the lines that follow a line that was too long, and it
gives the same result however the byte stream is cut into chunks.
"""

from dataclasses import dataclass
from typing import List, Union

__all__ = ["LineParser", "LineTooLong", "Overflow"]


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
