"""
The shared room's ordering feed, as pure state: whatever the channel does
(messages late, early, reordered, duplicated, lost) and whenever the stream
answers, each number is delivered at most once and in order; with the
whole stream, every number is delivered; numbers the broker never gave are
dropped.  Property-tested with hypothesis, as LineParser is.
"""

from typing import Any, List, Set, Tuple

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat.backends.redis.feed import (
    Backfill,
    Deliver,
    Forged,
    Gap,
    RoomFeed,
)


class Broker:
    """
    A room's broker as the feed sees it: messages 1 to C{last} published,
    kept in a stream but for C{lost}.
    """

    def __init__(self, last: int, lost: Set[int] = frozenset()) -> None:  # type: ignore
        self.last = last
        self.lost = lost

    def read(self, request: Backfill) -> List[Tuple[int, int]]:
        end = self.last if request.last is None else request.last
        return [
            (seq, seq) for seq in range(request.first, end + 1) if seq not in self.lost
        ]


class Run:
    """
    A feed driven by a script: what it delivered, and what it said.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.feed: RoomFeed[int] = RoomFeed()
        self.delivered: List[int] = []
        self.pending: List[Backfill] = []
        self.said: List[Any] = []

    def take(self, actions: List[Any]) -> None:
        for action in actions:
            self.said.append(action)
            if isinstance(action, Deliver):
                assert action.payload == action.seq
                self.delivered.append(action.seq)
            elif isinstance(action, Backfill):
                self.pending.append(action)

    def answer(self) -> None:
        request = self.pending.pop(0)
        entries = self.broker.read(request)
        self.take(self.feed.backfilled(entries, self.broker.last))

    def answerAll(self) -> None:
        while self.pending:
            self.answer()


@st.composite
def scripts(draw: Any) -> Tuple[int, int, int, List[int], List[int], List[bool]]:
    """
    A room's history and what one process sees of it: C{last} messages in
    all; C{subscribed}, the number when the channel was subscribed;
    C{current}, when the feed asked; the channel's messages before the
    question (numbered at most C{current}) and after it, in any order, some
    twice, some never; and when the stream answers.
    """
    last = draw(st.integers(0, 30))
    subscribed = draw(st.integers(0, last))
    current = draw(st.integers(subscribed, last))
    live = list(range(subscribed + 1, last + 1))
    shown = draw(st.lists(st.sampled_from(live), max_size=60)) if live else []
    early = [seq for seq in shown if seq <= current and draw(st.booleans())]
    late = [seq for seq in shown if seq not in early or draw(st.booleans())]
    answers = draw(st.lists(st.booleans(), min_size=len(late), max_size=len(late)))
    return last, subscribed, current, early, late, answers


def play(
    broker: Broker, current: int, early: List[int], late: List[int], answers: List[bool]
) -> Run:
    """
    Subscribed: C{early} arrive; the broker is asked its number
    (C{current}); then C{late} arrive, the stream answering in between
    where C{answers} says.
    """
    run = Run(broker)
    for seq in early:
        run.take(run.feed.received(seq, seq))
    run.feed.startSync()
    run.take(run.feed.synced(current))
    for seq, answerFirst in zip(late, answers):
        if answerFirst and run.pending:
            run.answer()
        run.take(run.feed.received(seq, seq))
    run.answerAll()
    return run


class FeedPropertyTests(SynchronousTestCase):
    @given(scripts())
    def test_each_number_at_most_once_in_order(self, script: Any) -> None:
        last, subscribed, current, early, late, answers = script
        run = play(Broker(last), current, early, late, answers)
        self.assertEqual(run.delivered, sorted(set(run.delivered)))
        self.assertEqual([a for a in run.said if isinstance(a, Forged)], [])

    @given(scripts())
    def test_with_the_whole_stream_nothing_is_missed(self, script: Any) -> None:
        last, subscribed, current, early, late, answers = script
        run = play(Broker(last), current, early, late, answers)
        seen = early + late
        start = min([current] + [seq - 1 for seq in early])
        end = max([start] + seen)
        self.assertEqual(run.delivered, list(range(start + 1, end + 1)))
        self.assertEqual([a for a in run.said if isinstance(a, Gap)], [])
        self.assertFalse(run.feed.syncing)

    @given(scripts(), st.sets(st.integers(1, 30)))
    def test_what_the_stream_lost_is_a_gap_and_order_holds(
        self, script: Any, lost: Set[int]
    ) -> None:
        last, subscribed, current, early, late, answers = script
        run = play(Broker(last, lost), current, early, late, answers)
        self.assertEqual(run.delivered, sorted(set(run.delivered)))
        gaps = {
            seq
            for a in run.said
            if isinstance(a, Gap)
            for seq in range(a.first, a.last + 1)
        }
        if run.delivered:
            missing = set(range(run.delivered[0], run.delivered[-1] + 1))
            missing -= set(run.delivered)
            self.assertLessEqual(missing, gaps | lost)
            self.assertEqual(gaps & set(run.delivered), set())

    @given(scripts(), st.lists(st.integers(1, 10**6), min_size=1, max_size=5))
    def test_numbers_past_the_broker_s_are_dropped(
        self, script: Any, forged: List[int]
    ) -> None:
        last, subscribed, current, early, late, answers = script
        forged = [last + n for n in forged]  # numbers the broker never gave
        run = play(Broker(last), current, forged + early, late, answers)
        dropped = [a.seq for a in run.said if isinstance(a, Forged)]
        self.assertEqual(sorted(dropped), sorted(forged))
        self.assertEqual(set(run.delivered) & set(forged), set())
        self.assertEqual(run.delivered, sorted(set(run.delivered)))


class FeedTests(SynchronousTestCase):
    def test_a_gap_asks_the_stream_and_waits(self) -> None:
        feed: RoomFeed[str] = RoomFeed()
        feed.startSync()
        self.assertEqual(feed.synced(3), [])
        self.assertEqual([a.seq for a in feed.received(4, "d")], [4])  # type: ignore
        [backfill] = feed.received(7, "g")
        self.assertEqual(backfill, Backfill(5, 6))
        self.assertEqual(feed.received(8, "h"), [])  # waits for the stream
        actions = feed.backfilled([(5, "e"), (6, "f")], 8)
        self.assertEqual([a.payload for a in actions], ["e", "f", "g", "h"])  # type: ignore

    def test_after_a_reconnection_what_was_missed_is_asked_for(self) -> None:
        feed: RoomFeed[str] = RoomFeed()
        feed.startSync()
        feed.synced(0)
        feed.received(1, "a")
        feed.startSync()  # Redis away, then back
        self.assertEqual(feed.synced(5), [Backfill(2, None)])

    def test_a_broker_that_lost_its_data_starts_again(self) -> None:
        feed: RoomFeed[str] = RoomFeed()
        feed.startSync()
        feed.synced(10)
        feed.startSync()
        self.assertEqual(feed.synced(2), [])
        self.assertEqual(feed.lastSeq, 2)
