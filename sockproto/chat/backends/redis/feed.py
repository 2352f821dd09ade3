# -*- test-case-name: tests.test_chat_feed -*-
"""
The order of a shared room's events, as pure state (sans-IO, as h11 and
wsproto keep their protocols): no socket, no clock, no Redis.

The broker numbers each room's messages 1, 2, 3, ...; every process must
deliver them in that order, each once.  L{RoomFeed} takes what arrives (on
the room's channel, and from its stream when backfilling) and says what to
do, as values: L{Deliver} these events now, L{Backfill} this range from
the stream, a L{Gap} could not be filled, a L{Forged} number was dropped.
Its owner (the shared room) does the I/O and feeds the answers back.

However the channel's messages are cut, reordered, duplicated or lost,
the feed delivers each number at most once, in increasing order; with the
stream's help, every number (tests/test_chat_feed.py, with hypothesis).
"""

from typing import Any, Generic, List, Optional, Sequence, Tuple, TypeVar, Union

__all__ = ["Backfill", "Deliver", "Forged", "Gap", "RoomFeed"]

T = TypeVar("T")


class Deliver(Generic[T]):
    """
    Deliver C{payload}, the message numbered C{seq}, now.
    """

    __slots__ = ("seq", "payload")

    def __init__(self, seq: int, payload: T) -> None:
        self.seq, self.payload = seq, payload

    def __repr__(self) -> str:
        return f"Deliver({self.seq})"


class Backfill:
    """
    Read the stream's messages from C{first} to C{last} (None: to its
    end), with the room's current number, and give them to
    L{RoomFeed.backfilled}.
    """

    __slots__ = ("first", "last")

    def __init__(self, first: int, last: Optional[int]) -> None:
        self.first, self.last = first, last

    def __repr__(self) -> str:
        return f"Backfill({self.first}, {self.last})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backfill) and (self.first, self.last) == (
            other.first,
            other.last,
        )


class Gap:
    """
    Messages C{first} to C{last} are no longer in the stream: delivery
    goes on after them.
    """

    __slots__ = ("first", "last")

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def __repr__(self) -> str:
        return f"Gap({self.first}, {self.last})"


class Forged:
    """
    A message numbered C{seq}, past the room's number C{current} when it
    arrived: the broker never gave that number, so it was dropped.
    """

    __slots__ = ("seq", "current")

    def __init__(self, seq: int, current: int) -> None:
        self.seq, self.current = seq, current

    def __repr__(self) -> str:
        return f"Forged({self.seq}, {self.current})"


Action = Union[Deliver[Any], Backfill, Gap, Forged]


class RoomFeed(Generic[T]):
    """
    The delivery order of one room's numbered messages (their payloads, of
    any type C{T}).

    While I{syncing} (joining the room, or backfilling a gap), what
    arrives waits in a queue; once the stream has answered, the queue is
    delivered in order.

    @ivar lastSeq: the number of the last message delivered.
    @ivar syncing: whether arrivals wait for the stream's answer.
    """

    def __init__(self) -> None:
        self.lastSeq = 0
        self.syncing = True
        self._queue: List[Tuple[int, T]] = []
        self._mark = 0
        self._asked: Optional[Backfill] = None
        self._fromStart = False

    # --- input ----------------------------------------------------------

    def received(self, seq: int, payload: T) -> List[Action]:
        """
        The message numbered C{seq} came on the room's channel.
        """
        if self.syncing:
            self._queue.append((seq, payload))
            return []
        if seq == self.lastSeq + 1:
            return [self._deliver(seq, payload)]
        if seq > self.lastSeq:
            self._queue.append((seq, payload))
            return [self.startBackfill(seq - 1)]
        return []  # delivered already: a duplicate

    def startSync(self) -> None:
        """
        The room's channel is (again) subscribed: arrivals wait until
        L{synced} or L{backfilled} says where the room is.
        """
        self.syncing = True
        self._mark = len(self._queue)

    def synced(self, current: int) -> List[Action]:
        """
        The broker says the room's number is C{current}: start from there
        (or, if this process delivered before and the broker is not
        behind, ask for what was missed meanwhile).
        """
        if (self.lastSeq or self._fromStart) and current >= self.lastSeq:
            self._fromStart = False
            return [self.startBackfill(None)]
        actions = self._dropForged(current)
        # Start where the subscription did: what arrived since it was
        # confirmed is delivered, even if numbered past the GET.
        queued = [seq for seq, _ in self._queue]
        self.lastSeq = min(min(queued) - 1, current) if queued else current
        return actions + self.drain()

    def newEpoch(self) -> None:
        """
        The broker lost the room's state (restarted empty): its numbers
        start again from 1, and the next L{synced} asks for all of them.
        """
        self.lastSeq = 0
        self._fromStart = True

    def startBackfill(self, upTo: Optional[int]) -> Backfill:
        """
        Ask for the stream's messages after L{lastSeq}, up to C{upTo} (by
        default, all); arrivals wait meanwhile.
        """
        self.syncing = True
        self._fromStart = False
        self._mark = len(self._queue)
        self._asked = Backfill(self.lastSeq + 1, upTo)
        return self._asked

    def backfilled(
        self, entries: Sequence[Tuple[int, T]], current: Optional[int]
    ) -> List[Action]:
        """
        The stream answered a L{Backfill} with C{entries} (its messages, in
        order) and the room's number C{current} (None if it could not be
        read): deliver them, then what arrived meanwhile.
        """
        actions: List[Action] = []
        if current is not None:
            actions += self._dropForged(current)
        for seq, payload in entries:
            if seq > self.lastSeq:
                actions.append(self._deliver(seq, payload))
        asked, self._asked = self._asked, None
        covered = current if asked is None or asked.last is None else asked.last
        return actions + self.drain(covered)

    def failed(self) -> List[Action]:
        """
        The stream could not be read: deliver what arrived, in order, past
        the gaps.
        """
        self._asked = None
        return self.drain(covered=None, readable=False)

    def drain(
        self, covered: Optional[int] = None, readable: bool = True
    ) -> List[Action]:
        """
        Deliver what arrived while syncing, in order, and stop syncing.  A
        gap the stream was asked about, up to C{covered}, and did not fill
        is lost: a L{Gap}, and delivery goes on after it; one it was not
        asked about (a message lost on the channel meanwhile) is asked for
        first (L{Backfill}), and syncing goes on.
        """
        if not self.syncing:
            return []
        queue = sorted(self._queue, key=lambda item: item[0])
        actions: List[Action] = []
        for index, (seq, payload) in enumerate(queue):
            if seq <= self.lastSeq:
                continue
            if seq != self.lastSeq + 1:
                if readable and (covered is None or covered < seq - 1):
                    self._queue = queue[index:]
                    actions.append(self.startBackfill(seq - 1))
                    return actions
                actions.append(Gap(self.lastSeq + 1, seq - 1))
            actions.append(self._deliver(seq, payload))
        self.syncing = False
        self._queue, self._mark = [], 0
        return actions

    # --- the rest -----------------------------------------------------------

    def _deliver(self, seq: int, payload: T) -> Deliver[T]:
        self.lastSeq = seq
        return Deliver(seq, payload)

    def _dropForged(self, current: int) -> List[Action]:
        """
        Drop, of the messages queued before the broker's number was asked,
        any numbered past C{current}: the broker never gave that number.
        """
        early, late = self._queue[: self._mark], self._queue[self._mark :]
        forged = [Forged(seq, current) for seq, _ in early if seq > current]
        self._queue = [item for item in early if item[0] <= current] + late
        self._mark = 0
        return list(forged)
