# -*- test-case-name: tests.test_chat_shared -*-
"""
A room shared through Redis, as one process sees it.

It I{contains} an in-process L{ChatRoom}: that one holds the room's
members in this process, fans events out to them, keeps the room's recent
history as this process last saw it, and serves the room alone while
Redis is away.  The broker's numbered messages are put in order by a
L{RoomFeed} (pure state); this module does what the feed says.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

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
        return bool(self._pending or self._incoming or self.local.pending)

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
        self.members[id(member)] = member
        self._announce(
            ChatEvent(JOIN, self.name, member.nick, time=self.clock.seconds())
        )
        seen = self.lastSeq
        d: Deferred[Any] = self.store.join(self.name, member.nick)
        d.addCallback(lambda _: self._history(seen))
        d.addErrback(self._noHistory)
        return d

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
        if self.alone:
            if arriving and not (self.members or self._arriving):
                self.server.roomEmptied(self)
            return self.local.remove(member, reason, kind)
        self.flush()
        if self.members.pop(id(member), None) is None and not arriving:
            return
        keepEmpty = self.name == self.server.defaultRoom
        d = self.store.leave(self.name, member.nick, keepEmpty)
        if not arriving:  # else its arrival was never announced
            d.addCallback(self._left, member.nick, reason, kind)
        d.addErrback(self.server.logFailure, "leaving #" + self.name)
        if not (self.members or self._arriving):
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
        return self.store.members(self.name)

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
        if id(member) in self.members:
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
        Called with each numbered message of the room's channel.
        """
        try:
            events = decode_events(data)
        except MalformedMessageError as e:
            return self.server.dropped(self.name, str(e))
        self.perform(self.feed.received(seq, events))

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
        if events:
            self._incoming.extend(events)
            if self._incomingCall is None:
                self._incomingCall = self.clock.callLater(0, self.deliverIncoming)

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
        for member in self.local.fanOut(batch):
            self.remove(member, "delivery failed")

    def backfill(self, request: Backfill) -> "Deferred[Any]":
        """
        Read the stream as C{request} says, with the room's number, and give
        both to the feed.
        """
        reads: List[Deferred[Any]] = [
            self.store.messages(self.name, request.first, request.last),
            self.store.lastNumber(self.name),
        ]
        d = gatherResults(reads, consumeErrors=True)

        def read(replies: List[Any]) -> None:
            entries, current = replies
            self.perform(self.feed.backfilled(self._decode(entries), current))

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
        d: Deferred[Any] = self.store.lastNumber(self.name)

        def start(current: int) -> Optional["Deferred[Any]"]:
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
