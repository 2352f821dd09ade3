# -*- test-case-name: tests.test_chat_shared -*-
"""
A room shared through Redis, as one process sees it.

It I{contains} an in-process L{ChatRoom}: that one holds the room's
members in this process, fans events out to them, keeps the room's recent
history as this process last saw it, and serves the room alone while
Redis is away.  The broker's numbered messages are put in order by a
L{RoomFeed} (pure state); this module does what the feed says.

Nothing on the room's channel is believed as it comes: a number is
delivered only as the room's stream holds it (the channel says "look",
the stream says what), so a message forged on the channel, even with the
next number, is dropped, and never displaces the real one.  A number
from before the room's current one hints that Redis started again: the
room's epoch, read with its number, says.

A newcomer is served its history first: live events wait for it until
the history (and the names its front end asks for next) are shown.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from zope.interface import implementer

from ....logs import SafeLogger
from ...events import (
    ACTION,
    JOIN,
    LEAVE,
    MESSAGE,
    NICK,
    NOTICE,
    QUIT,
    ChatEvent,
    EventBatch,
)
from ...interfaces import IChatMember, IChatRoom
from ..memory import ChatRoom
from .feed import Action, Backfill, Deliver, Forged, Gap, RoomFeed
from .store import Entries
from .wire import MalformedMessageError, decode_events

if TYPE_CHECKING:  # pragma: no cover
    from .server import RedisChatServer

__all__ = ["SharedRoom"]

log = SafeLogger()

SAID = (MESSAGE, ACTION)
SERVER_LOST = "server lost"
"""The reason given for members of a process taken for dead."""
REJOINED = "rejoined"
"""The text of a JOIN a process announces for members it had lost."""
LOST_STATE = (
    "the chat network lost its recent state (Redis started again, empty):"
    " lines said on other servers just before may be missing"
)


@implementer(IChatRoom)
class SharedRoom:
    """
    A room shared through Redis: its members here, and the broker's
    numbered events, delivered in order.

    (Over 300 lines: it does what the feed says — deliver, backfill, sync
    — and each of the room's operations in both modes; the Redis side is
    L{RedisStore}'s, the order L{RoomFeed}'s, the members the local
    room's.)

    @ivar local: the in-process room inside: members, fan-out, history,
        and the whole room while L{alone}.
    @ivar alone: whether Redis is away, so that L{local} serves the room
        by itself; set by the server (L{RedisChatServer.switch}) only.
    @ivar feed: the order of the broker's numbered messages.
    """

    def __init__(self, name: str, server: "RedisChatServer") -> None:
        self.name = name
        self.server = server
        self.store = server.store
        self.clock = server.clock
        self.stats = server.stats
        self.local = ChatRoom(
            name,
            server.clock,
            server.historySize,
            server.quietAbove,
            lambda _: server.roomEmptied(self),
            server.stats,
        )
        self.alone = not server.up
        self.feed: RoomFeed[List[ChatEvent]] = RoomFeed()
        self._pending: List[ChatEvent] = []
        self._flushCall: Optional[IDelayedCall] = None
        self._incoming: List[ChatEvent] = []
        self._incomingCall: Optional[IDelayedCall] = None
        self._arriving: Dict[int, IChatMember] = {}
        self._catchingUp: Dict[int, Tuple[IChatMember, List[EventBatch]]] = {}
        self._releasing: List[IChatMember] = []
        self._releaseCall: Optional[IDelayedCall] = None
        self._unverified: List[int] = []
        self._verifyCall: Optional[IDelayedCall] = None
        self._checkingEpoch = False
        self._epochChecked = -1.0
        self.epoch: Optional[str] = None
        self._reaped: Set[str] = set()
        self._unconfirmed: Dict[Tuple[str, str, str, float], None] = {}
        self.synced: Deferred[None] = Deferred()

    @property
    def members(self) -> Dict[int, IChatMember]:
        """This process's members of the room (the local room's)."""
        return self.local.members

    @property
    def history(self) -> Sequence[ChatEvent]:
        """The room's recent lines, as this process last saw them."""
        return self.local.history

    @property
    def lastSeq(self) -> int:
        """The number of the last message delivered here (the feed's)."""
        return self.feed.lastSeq

    @property
    def syncing(self) -> bool:
        """Whether the room waits for the stream to say where it is."""
        return self.feed.syncing

    @property
    def pending(self) -> bool:
        """Whether events wait to be published or delivered."""
        return bool(
            self._pending
            or self._incoming
            or self.local.pending
            or self._unverified
            or self._catchingUp
        )

    @property
    def busy(self) -> bool:
        """Whether anything of the room is under way (for tests' turns)."""
        return self.pending or self.syncing

    def goAlone(self) -> None:
        """
        Redis went away: the local room serves the room, starting with what
        this turn had yet to publish; what arrives once Redis is back waits
        for L{sync}.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        unpublished, self._pending = self._pending, []
        if unpublished:
            self.deliverBatch(EventBatch(tuple(unpublished)))
        self._release(list(m for m, _ in self._catchingUp.values()))
        self.alone = True
        self.feed.startSync()

    def goShared(self) -> None:
        """
        Redis is back and the room synced: serve it through Redis again.
        """
        self.local.flush()
        self.alone = False

    # --- joining and leaving ---------------------------------------------

    def join(self, member: IChatMember) -> "Deferred[List[ChatEvent]]":
        self.deliverIncoming()  # what came before the member's history
        if self.alone:
            self.server.tellAlone(member)
            return self.local.join(member)
        # Once the room's channel is subscribed and synced, everything
        # published from then on reaches this process: only then does the
        # member arrive, and its history end where live delivery starts.
        self._arriving[id(member)] = member
        return self._whenSynced().addCallback(lambda _: self._arrive(member))

    def _whenSynced(self) -> "Deferred[None]":
        if self.synced.called:
            return succeed(None)
        d: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            d.callback(None)
            return result

        self.synced.addBoth(fire)
        return d

    def _arrive(self, member: IChatMember) -> "Deferred[List[ChatEvent]]":
        if self._arriving.pop(id(member), None) is None:
            return succeed([])  # it left meanwhile
        if self.alone:
            return self.local.join(member)
        self.flush()
        self.deliverIncoming()
        self._catchingUp[id(member)] = (member, [])
        self._announce(
            ChatEvent(JOIN, self.name, member.nick, time=self.clock.seconds())
        )
        seen = self.lastSeq
        d: Deferred[Any] = self.store.join(self.name, member.nick)
        d.addCallback(lambda _: self._history(seen))
        d.addErrback(self._noHistory)
        return d.addCallback(self._historyRead, member)

    def _historyRead(
        self, history: List[ChatEvent], member: IChatMember
    ) -> List[ChatEvent]:
        """
        C{member}'s history is about to be shown: it goes live once that
        is done — after the names its front end asks for next (L{nicks}),
        or at the end of this turn.
        """
        if id(member) in self._catchingUp:
            self._releasing.append(member)
            if self._releaseCall is None:
                self._releaseCall = self.clock.callLater(0, self._releaseWaiting)
        return history

    def _releaseWaiting(self) -> None:
        self._releaseCall = None
        releasing, self._releasing = self._releasing, []
        self._release(releasing)

    def _release(self, members: Sequence[IChatMember]) -> None:
        """
        C{members}' history is shown: make them live, with what was
        delivered to the room meanwhile.
        """
        for member in members:
            entry = self._catchingUp.pop(id(member), None)
            if entry is None:
                continue  # it left meanwhile
            self.members[id(member)] = member
            for batch in entry[1]:
                try:
                    member.deliver(batch)
                except Exception:
                    log.failure("chat: delivery to {nick} failed", nick=member.nick)
                    self.remove(member, "delivery failed")
                    break

    def _noHistory(self, failure: Failure) -> List[ChatEvent]:
        self.server.logFailure(failure, f"reading #{self.name}'s history")
        return list(self.local.history)

    def _history(self, end: int) -> "Deferred[List[ChatEvent]]":
        historySize = self.server.historySize
        if not historySize or not end:
            return succeed([])
        count = historySize * self.server.historyScan + 20
        d = self.store.recent(self.name, end, count)

        def lines(entries: Entries) -> List[ChatEvent]:
            events = [e for _, es in self._decode(entries) for e in es]
            return [e for e in events if e.kind in SAID][-historySize:]

        return d.addCallback(lines)

    def leave(self, member: IChatMember, reason: str) -> "Deferred[None]":
        self.remove(member, reason)
        return succeed(None)

    def quit(self, member: IChatMember, reason: str) -> "Deferred[None]":
        self.remove(member, reason, QUIT)
        return succeed(None)

    def remove(self, member: IChatMember, reason: str, kind: str = LEAVE) -> None:
        """
        L{leave} (or, with C{kind} L{QUIT}, L{quit}), at once (as far as
        this process is concerned).
        """
        arriving = self._arriving.pop(id(member), None) is not None
        catchingUp = self._catchingUp.pop(id(member), None) is not None
        if self.alone:
            if arriving and not (self.members or self._arriving):
                self.server.roomEmptied(self)
            return self.local.remove(member, reason, kind)
        self.flush()
        present = self.members.pop(id(member), None) is not None or catchingUp
        if not present and not arriving:
            return
        keepEmpty = self.name == self.server.defaultRoom
        d = self.store.leave(self.name, member.nick, keepEmpty)
        if not arriving:  # else its arrival was never announced
            d.addCallback(self._left, member.nick, reason, kind)
        d.addErrback(self.server.logFailure, "leaving #" + self.name)
        if not (self.members or self._arriving or self._catchingUp):
            self.server.roomEmptied(self)

    def _left(self, remaining: int, nick: str, reason: str, kind: str) -> None:
        if remaining:
            self.server.publish(
                self,
                [ChatEvent(kind, self.name, nick, reason, time=self.clock.seconds())],
            )

    def nicks(self) -> "Deferred[List[str]]":
        if self.alone:
            return self.local.nicks()
        d = self.store.members(self.name)
        releasing, self._releasing = self._releasing, []
        if releasing:  # a newcomer's front end shows them: live after that

            def release(result: object) -> object:
                self.clock.callLater(0, self._release, releasing)
                return result

            d.addBoth(release)
        return d

    def memberNicks(self) -> List[str]:
        """This process's members' nicknames."""
        return self.local.memberNicks()

    # --- events -----------------------------------------------------------

    def say(self, member: IChatMember, text: str) -> "Deferred[None]":
        if self.alone:
            return self.local.say(member, text)
        return self._said(
            ChatEvent(MESSAGE, self.name, member.nick, text, time=self.clock.seconds())
        )

    def act(self, member: IChatMember, text: str) -> "Deferred[None]":
        if self.alone:
            return self.local.act(member, text)
        return self._said(
            ChatEvent(ACTION, self.name, member.nick, text, time=self.clock.seconds())
        )

    def notice(self, member: IChatMember, text: str) -> "Deferred[None]":
        if self.alone:
            return self.local.notice(member, text)
        return self._said(
            ChatEvent(NOTICE, self.name, member.nick, text, time=self.clock.seconds())
        )

    def _said(self, event: ChatEvent) -> "Deferred[None]":
        self.stats.lines += 1
        self._publish(event)
        return succeed(None)

    def renamed(self, member: IChatMember, old: str, new: str) -> None:
        """
        Announce that C{member}, formerly C{old}, is now C{new}.
        """
        if self.alone:
            return self.local.renamed(member, old, new)
        if id(member) in self.members or id(member) in self._catchingUp:
            self._announce(
                ChatEvent(NICK, self.name, old, new, time=self.clock.seconds())
            )

    def _announce(self, event: ChatEvent) -> None:
        if len(self.members) <= self.local.quietAbove:
            self._publish(event)

    def _publish(self, event: ChatEvent) -> None:
        self._pending.append(event)
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Publish the events of this reactor turn, as one message (or, while
        alone, deliver them here).
        """
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if self.alone:
            self.deliverIncoming()
            self.local.flush()
            return
        if self._pending:
            events, self._pending = self._pending, []
            self.server.publish(self, events)

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
        d = self.store.messages(self.name, seqs[0], seqs[-1])

        def verified(entries: Entries) -> None:
            found = dict(self._decode(entries))
            actions: List[Action] = []
            for seq in seqs:
                events = found.get(seq)
                if events is None:
                    self.server.dropped(self.name, f"number {seq} is not in its stream")
                else:
                    actions += self.feed.received(seq, events)
            self.perform(actions)

        def failed(failure: Failure) -> None:
            # Redis went away: the room syncs when it is back.  Else the
            # next number's gap makes the feed read these again.
            self.server.logFailure(failure, f"reading #{self.name}'s stream")

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
        d = self.store.position(self.name)

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
            room=self.name,
            seq=self.feed.lastSeq,
        )
        self.feed.newEpoch()
        for member in list(self.members.values()):
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
                    room=self.name,
                    first=action.first,
                    last=action.last,
                    seq=action.last + 1,
                )
            elif isinstance(action, Forged):
                self.server.dropped(
                    self.name, f"number {action.seq} past {action.current}"
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
            if any(m.nick.lower() == nick for m in self.members.values()):
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
            self.deliverBatch(EventBatch(tuple(events)))

    def deliverBatch(self, batch: EventBatch) -> None:
        """
        Deliver C{batch} to this process's members, and remember its lines
        as the room's history (what the local room serves if Redis goes
        away).
        """
        history = self.local.history
        history.extend(e for e in batch.events if e.kind in SAID)
        for _, waiting in self._catchingUp.values():
            waiting.append(batch)
        for member in self.local.fanOut(batch):
            self.remove(member, "delivery failed")

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
        self.deliverBatch(EventBatch(tuple(events)))

    def backfill(self, request: Backfill) -> "Deferred[Any]":
        """
        Read the stream as C{request} says, with the room's number, and give
        both to the feed.
        """
        reads: List[Deferred[Any]] = [
            self.store.messages(self.name, request.first, request.last),
            self.store.position(self.name),
        ]
        d = gatherResults(reads, consumeErrors=True)

        def read(replies: List[Any]) -> Optional["Deferred[Any]"]:
            entries, (current, epoch) = replies
            if self._newEpoch(epoch):  # what was read is the new epoch's
                return self.backfill(self.feed.startBackfill(None))
            self.perform(self.feed.backfilled(self._decode(entries), current))
            return None

        def failed(failure: Failure) -> None:
            self.server.logFailure(failure, f"backfilling #{self.name}")
            self.perform(self.feed.failed())

        return d.addCallbacks(read, failed)

    def _decode(self, entries: Entries) -> List[Tuple[int, List[ChatEvent]]]:
        decoded = []
        for seq, data in entries:
            try:
                decoded.append((seq, decode_events(data)))
            except MalformedMessageError as e:
                self.server.dropped(self.name, str(e))
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
        d: Deferred[Any] = self.store.position(self.name)

        def start(position: Tuple[int, str]) -> Optional["Deferred[Any]"]:
            current, epoch = position
            self._newEpoch(epoch)
            actions = self.feed.synced(current)
            backfills = [a for a in actions if isinstance(a, Backfill)]
            self.perform([a for a in actions if not isinstance(a, Backfill)])
            return self.backfill(backfills[0]) if backfills else None

        def failed(failure: Failure) -> None:
            self.server.logFailure(failure, f"joining #{self.name}")
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
