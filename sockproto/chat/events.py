# -*- test-case-name: tests.test_chat_rooms -*-
"""
What happens in a chat, as values that every front end can render its way.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Optional, Sequence, Tuple

__all__ = ["ChatEvent", "EventBatch"]

MESSAGE = "message"
ACTION = "action"
JOIN = "join"
LEAVE = "leave"
NICK = "nick"
PRIVATE = "private"
NOTICE = "notice"
PRIVATE_NOTICE = "private_notice"
QUIT = "quit"


@dataclass(frozen=True)
class ChatEvent:
    """
    One thing that happened in a room, or one private message.

    @ivar kind: L{MESSAGE}, L{ACTION} (C{/me}), L{NOTICE} (IRC's: a line
        that nobody, bots above all, answers), L{JOIN}, L{LEAVE}, L{QUIT}
        (a leave because the member left the chat: IRC shows it once for
        all its rooms), L{NICK}, L{PRIVATE} or L{PRIVATE_NOTICE}.
    @ivar room: the room's name (empty for a private message or notice).
    @ivar nick: who did it.
    @ivar text: what was said, the leave or quit reason, or the new
        nickname.
    @ivar target: the recipient of a private message.
    @ivar time: when it happened (seconds since the epoch, by the clock of
        the back end that made it; 0 if unknown): IRC's C{server-time}
        shows a room's history at the times it was said.  Not compared.
    """

    kind: str
    room: str
    nick: str
    text: str = ""
    target: str = ""
    time: float = field(default=0.0, compare=False)


Render = Callable[[Sequence[ChatEvent]], bytes]


@dataclass
class EventBatch:
    """
    The events a room publishes in one reactor turn, delivered to every
    member at once.  Each front end renders the batch once, with
    L{rendered}, and writes the same bytes to each of its connections.
    """

    events: Tuple[ChatEvent, ...]
    _rendered: Dict[object, bytes] = field(default_factory=dict, repr=False)
    _senders: Optional[FrozenSet[str]] = field(default=None, repr=False)
    _kinds: Optional[FrozenSet[str]] = field(default=None, repr=False)
    _each: Dict[object, Tuple[bytes, ...]] = field(default_factory=dict, repr=False)

    @property
    def senders(self) -> FrozenSet[str]:
        """
        The nicknames of those who did something in this batch, computed
        once (a front end that does not echo a member's own events asks it
        for each member).
        """
        if self._senders is None:
            self._senders = frozenset(event.nick for event in self.events)
        return self._senders

    @property
    def kinds(self) -> FrozenSet[str]:
        """
        The kinds of the events in this batch, computed once.
        """
        if self._kinds is None:
            self._kinds = frozenset(event.kind for event in self.events)
        return self._kinds

    def each(
        self, key: object, render: Callable[[ChatEvent], bytes]
    ) -> Tuple[bytes, ...]:
        """
        C{render(event)} for each event, computed once per C{key}: for a
        front end that sends some members only some of the events.
        """
        pieces = self._each.get(key)
        if pieces is None:
            pieces = self._each[key] = tuple(render(e) for e in self.events)
        return pieces

    def rendered(self, key: object, render: Render) -> bytes:
        """
        C{render(self.events)}, computed once per C{key}: use one key per
        way of rendering (sockproto's line protocol uses its class).
        """
        data = self._rendered.get(key)
        if data is None:
            data = self._rendered[key] = render(self.events)
        return data
