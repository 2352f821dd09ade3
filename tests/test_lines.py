from typing import List

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sockproto.lines import (
    Event,
    LineFactory,
    LineParser,
    LineProtocol,
    LineTooLong,
    Overflow,
)
from sockproto.testing import connect


def parse_in_chunks(data: bytes, cuts: List[int], limit: int = 8) -> List[Event]:
    parser = LineParser(limit, limit * 4)
    events: List[Event] = []
    start = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        events += parser.feed(data[start:cut])
        start = cut
    return events + parser.finish()


class LineParserTests(SynchronousTestCase):
    def test_lf_and_crlf_both_end_lines(self) -> None:
        parser = LineParser(100, 400)
        self.assertEqual(parser.feed(b"a\nb\r\nc"), [b"a", b"b"])
        self.assertEqual(parser.finish(), [b"c"])

    def test_line_over_limit_is_reported_and_next_line_kept(self) -> None:
        parser = LineParser(4, 100)
        self.assertEqual(parser.feed(b"12345\nok\n"), [LineTooLong(5), b"ok"])

    def test_line_at_limit_is_accepted(self) -> None:
        self.assertEqual(LineParser(4, 100).feed(b"1234\n"), [b"1234"])

    def test_long_line_is_not_buffered(self) -> None:
        parser = LineParser(4, 100)
        self.assertEqual(parser.feed(b"x" * 50), [])
        self.assertEqual(parser.pending, b"")
        self.assertTrue(parser.discarding)
        self.assertEqual(parser.feed(b"x\nok\n"), [LineTooLong(51), b"ok"])

    def test_overflow_when_far_past_limit_without_line_end(self) -> None:
        parser = LineParser(4, 20)
        self.assertEqual(parser.feed(b"x" * 21), [Overflow()])
        self.assertEqual(parser.feed(b"more\n"), [])
        self.assertEqual(parser.finish(), [])

    def test_unfinished_long_line_at_end_is_too_long(self) -> None:
        parser = LineParser(4, 100)
        parser.feed(b"123456")
        self.assertEqual(parser.finish(), [LineTooLong(6)])

    @given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=20))
    def test_any_chunking_gives_the_same_events(
        self, data: bytes, cuts: List[int]
    ) -> None:
        self.assertEqual(parse_in_chunks(data, cuts), parse_in_chunks(data, []))

    @given(
        st.lists(
            st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"xxxxxxxxx"]), max_size=60
        ),
        st.lists(st.integers(min_value=0), max_size=20),
    )
    def test_any_chunking_of_line_like_streams_gives_the_same_events(
        self, pieces: List[bytes], cuts: List[int]
    ) -> None:
        data = b"".join(pieces)
        self.assertEqual(parse_in_chunks(data, cuts), parse_in_chunks(data, []))


class Answering(LineProtocol):
    """
    Answers C{slow} lines once its test fires their Deferred, the others at
    once: what a protocol whose replies wait for a back end does.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.pending: List[Deferred[None]] = []

    def lineReceived(self, line: bytes) -> None:
        if line == b"slow":
            d: Deferred[None] = Deferred()
            d.addCallback(lambda _: self.transport.write(b"slow done\n"))
            self.pending.append(d)
            self.waitFor(d)
        else:
            self.transport.write(line + b"\n")


class WaitForTests(SynchronousTestCase):
    def setUp(self) -> None:
        factory = LineFactory()
        factory.protocol = Answering
        factory.clock = Clock()
        self.protocol, self.transport = connect(factory)

    def test_lines_after_one_being_answered_wait_for_its_answer(self) -> None:
        self.protocol.dataReceived(b"one\nslow\ntwo\nthree\n")
        self.assertEqual(self.transport.value(), b"one\n")
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.dataReceived(b"four\n")  # read before the pause took
        self.protocol.pending.pop().callback(None)
        self.assertEqual(self.transport.value(), b"one\nslow done\ntwo\nthree\nfour\n")
        self.assertEqual(self.transport.producerState, "producing")

    def test_an_answer_already_there_holds_nothing(self) -> None:
        self.protocol.dataReceived(b"slow\n")
        self.protocol.pending.pop().callback(None)
        self.protocol.dataReceived(b"again\n")
        self.assertEqual(self.transport.value(), b"slow done\nagain\n")

    def test_the_end_of_input_closes_once_answered(self) -> None:
        self.protocol.dataReceived(b"slow\nlast\n")
        self.protocol.inputEnded()
        self.assertFalse(self.transport.disconnecting)
        self.protocol.pending.pop().callback(None)
        self.assertEqual(self.transport.value(), b"slow done\nlast\n")
        self.assertTrue(self.transport.disconnecting)
