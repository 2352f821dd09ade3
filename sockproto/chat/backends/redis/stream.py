# -*- test-case-name: tests.test_chat_redis_faults -*-
"""
What comes from the broker for one shared room, as one process hears it.

L{RoomStream} takes the numbers on the room's channel, looks them up in
the room's stream (once per turn for all that came in it: the channel
says "look", the stream says what, so a forged message is dropped and
never displaces the real one), puts them in order with a L{RoomFeed}
(pure state), backfills what the feed says is missing, notices a new
epoch (Redis started again, empty), and hands what is to be delivered to
its L{SharedRoom}, once a turn: without the false departures and arrivals
a process's own members must not see, and without what was delivered
here already when publishing it seemed to fail.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from ....logs import SafeLogger
from ...events import JOIN, QUIT, ChatEvent, EventBatch
from .feed import Action, Backfill, Deliver, Forged, Gap, RoomFeed
from .store import Entries
from .wire import MalformedMessageError, decode_events

if TYPE_CHECKING:  # pragma: no cover
    from .room import SharedRoom

__all__ = ["LOST_STATE", "REJOINED", "RoomStream", "SERVER_LOST"]

log = SafeLogger()

SERVER_LOST = "server lost"
"""The reason given for members of a process taken for dead."""
REJOINED = "rejoined"
"""The text of a JOIN a process announces for members it had lost."""
LOST_STATE = (
    "the chat network lost its recent state (Redis started again, empty):"
    " lines said on other servers just before may be missing"
)


class RoomStream:
    """
    The broker's side of one L{SharedRoom}: see the module.

    @ivar feed: the order of the room's numbered messages.
    @ivar epoch: the room's epoch, as last read (None before).
    @ivar synced: fires once the room has first synced.
    """

    def __init__(self, room: "SharedRoom") -> None:
        self.room = room
        self.server = room.server
        self.store = room.store
        self.clock = room.clock
        self.feed: RoomFeed[List[ChatEvent]] = RoomFeed()
        self.epoch: Optional[str] = None
        self.synced: Deferred[None] = Deferred()
        self._incoming: List[ChatEvent] = []
        self._incomingCall: Optional[IDelayedCall] = None
        self._unverified: List[int] = []
        self._verifyCall: Optional[IDelayedCall] = None
        self._checkingEpoch = False
        self._epochChecked = -1.0
        self._reaped: Set[str] = set()
        self._unconfirmed: Dict[Tuple[str, str, str, float], None] = {}

    @property
    def pending(self) -> bool:
        """Whether numbers wait to be looked up, or events to be delivered."""
        return bool(self._incoming or self._unverified)

    def received(self, seq: int, data: bytes) -> None:
        """
        Called with each numbered message of the room's channel: its
        number is looked up in the room's stream (once per turn for all
        that came in it), and only what the stream holds is delivered.
        """
        if seq <= self.feed.lastSeq:
            return self._checkEpoch()  # a duplicate, or Redis started again
        if not self.server.link.up:
            return  # what was missed is read when the room syncs again
        self._unverified.append(seq)
        if self._verifyCall is None:
            self._verifyCall = self.clock.callLater(0, self._verify)

    def _verify(self) -> "Deferred[Any]":
        self._verifyCall = None
        last = self.feed.lastSeq
        seqs = sorted({seq for seq in self._unverified if seq > last})
        self._unverified = []
        if not seqs:
            return succeed(None)
        d = self.store.messages(self.room.name, seqs[0], seqs[-1])

        def verified(entries: Entries) -> None:
            found = dict(self.decode(entries))
            actions: List[Action] = []
            for seq in seqs:
                events = found.get(seq)
                if events is None:
                    self.server.dropped(
                        self.room.name, f"number {seq} is not in its stream"
                    )
                else:
                    actions += self.feed.received(seq, events)
            self.perform(actions)

        def failed(failure: Failure) -> None:
            # Redis went away: the room syncs when it is back.  Else the
            # next number's gap makes the feed read these again.
            self.server.logFailure(failure, f"reading #{self.room.name}'s stream")

        return d.addCallbacks(verified, failed)

    def _checkEpoch(self) -> None:
        """
        A number already delivered came again: if Redis lost the room's
        state meanwhile (a new epoch), deliver the new epoch's messages
        from the first.  At most one look a second.
        """
        now = self.clock.seconds()
        if self._checkingEpoch or now - self._epochChecked < 1.0:
            return
        self._checkingEpoch, self._epochChecked = True, now
        d = self.store.position(self.room.name)

        def checked(position: Tuple[int, str]) -> None:
            if self._newEpoch(position[1]) and not self.feed.syncing:
                self.backfill(self.feed.startBackfill(None))

        d.addCallbacks(checked, lambda failure: None)
        d.addBoth(lambda _: setattr(self, "_checkingEpoch", False))

    def _newEpoch(self, epoch: str) -> bool:
        """
        Note the room's epoch; if it changed, Redis lost the room's state:
        say so (log, and this process's members), and start the feed again
        from the new epoch's first number.
        """
        old, self.epoch = self.epoch, epoch
        if old is None or old == epoch:
            return False
        log.warn(
            "chat: #{room}: Redis lost the room's state (it started again empty,"
            " or was flushed); delivering its lines from the new start, after"
            " {seq}: what other processes published just before is lost",
            room=self.room.name,
            seq=self.feed.lastSeq,
        )
        self.feed.newEpoch()
        for member in list(self.room.members.values()):
            notice = getattr(member, "notice", None)
            if notice is not None:
                notice(LOST_STATE)
        return True

    def perform(self, actions: Sequence[Action]) -> None:
        """
        Do what the feed says: deliver, read the stream, log.
        """
        for action in actions:
            if isinstance(action, Deliver):
                self._deliverNumbered(action.payload)
            elif isinstance(action, Backfill):
                self.backfill(action)
            elif isinstance(action, Gap):
                log.warn(
                    "chat: #{room} events {first} to {last} are no longer"
                    " in Redis; going on from {seq}",
                    room=self.room.name,
                    first=action.first,
                    last=action.last,
                    seq=action.last + 1,
                )
            elif isinstance(action, Forged):
                self.server.dropped(
                    self.room.name, f"number {action.seq} past {action.current}"
                )

    def _deliverNumbered(self, events: List[ChatEvent]) -> None:
        """
        Deliver C{events} at the end of this reactor turn, with any others
        received in it: one write per member.
        """
        if self._unconfirmed:
            events = [e for e in events if self._unconfirmed.pop(_key(e), 1)]
        if events:
            self._incoming.extend(e for e in events if not self._false(e))
            if self._incomingCall is None:
                self._incomingCall = self.clock.callLater(0, self.deliverIncoming)

    def _false(self, event: ChatEvent) -> bool:
        """
        Whether C{event} is one this process's members must not see: that
        one of them was lost (another process took this one for dead while
        it was paused), or that someone is back whose loss they never saw
        (a process rejoining after Redis started again, empty).
        """
        if event.kind == QUIT and event.text == SERVER_LOST:
            nick = event.nick.lower()
            if any(m.nick.lower() == nick for m in self.room.members.values()):
                return True
            if len(self._reaped) > 10000:
                self._reaped.clear()
            self._reaped.add(nick)
        elif event.kind == JOIN and event.text == REJOINED:
            nick = event.nick.lower()
            if nick not in self._reaped:
                return True
            self._reaped.discard(nick)
        return False

    def deliverIncoming(self) -> None:
        """
        Deliver what was received from the broker, at once.
        """
        if self._incomingCall is not None:
            if self._incomingCall.active():
                self._incomingCall.cancel()
            self._incomingCall = None
        events, self._incoming = self._incoming, []
        if events:
            self.room.deliverBatch(EventBatch(tuple(events)))

    def deliverUnconfirmed(self, events: Sequence[ChatEvent]) -> None:
        """
        Publishing C{events} failed: deliver them here.  If Redis took
        them after all (a command written before it stalled runs when it
        resumes), the broker's copy is not delivered here again.
        """
        if len(self._unconfirmed) > 10000:
            self._unconfirmed.clear()
        for event in events:
            self._unconfirmed[_key(event)] = None
        self.room.deliverBatch(EventBatch(tuple(events)))

    def backfill(self, request: Backfill) -> "Deferred[Any]":
        """
        Read the stream as C{request} says, with the room's number, and give
        both to the feed.
        """
        reads: List[Deferred[Any]] = [
            self.store.messages(self.room.name, request.first, request.last),
            self.store.position(self.room.name),
        ]
        d = gatherResults(reads, consumeErrors=True)

        def read(replies: List[Any]) -> Optional["Deferred[Any]"]:
            entries, (current, epoch) = replies
            if self._newEpoch(epoch):  # what was read is the new epoch's
                return self.backfill(self.feed.startBackfill(None))
            self.perform(self.feed.backfilled(self.decode(entries), current))
            return None

        def failed(failure: Failure) -> None:
            self.server.logFailure(failure, f"backfilling #{self.room.name}")
            self.perform(self.feed.failed())

        return d.addCallbacks(read, failed)

    def decode(self, entries: Entries) -> List[Tuple[int, List[ChatEvent]]]:
        decoded = []
        for seq, data in entries:
            try:
                decoded.append((seq, decode_events(data)))
            except MalformedMessageError as e:
                self.server.dropped(self.room.name, str(e))
                decoded.append((seq, []))
        return decoded

    def sync(self) -> "Deferred[None]":
        """
        Start from the room's current number, once subscribed; then deliver
        what arrived meanwhile.  After a reconnection, backfill what was
        published while away (or start again from the broker's number if
        Redis lost its data).
        """
        self.feed.startSync()
        d: Deferred[Any] = self.store.position(self.room.name)

        def start(position: Tuple[int, str]) -> Optional["Deferred[Any]"]:
            current, epoch = position
            self._newEpoch(epoch)
            actions = self.feed.synced(current)
            backfills = [a for a in actions if isinstance(a, Backfill)]
            self.perform([a for a in actions if not isinstance(a, Backfill)])
            return self.backfill(backfills[0]) if backfills else None

        def failed(failure: Failure) -> None:
            self.server.logFailure(failure, f"joining #{self.room.name}")
            self.perform(self.feed.failed())

        d.addCallbacks(start, failed)
        d.addBoth(lambda _: self._synced())
        return d

    def _synced(self) -> None:
        synced, self.synced = self.synced, succeed(None)
        if not synced.called:
            synced.callback(None)


def _key(event: ChatEvent) -> Tuple[str, str, str, float]:
    """What tells an event from any other: as it travels (time in ms)."""
    return (event.kind, event.nick, event.text, round(event.time, 3))
