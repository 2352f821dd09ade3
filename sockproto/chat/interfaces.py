"""
The seams of the chat.

A front end (lines for telnet and nc, the web page, IRC) turns its wire
into calls on a L{sockproto.chat.session.ChatSession}, which knows no
transport, and shows what the session tells its L{IChatClient}.  The
session talks to the back end (L{IChatServer} and its L{IChatRoom}s: in
this process, or shared through Redis) only through methods that return
Deferreds, and names other members by their nicknames: nothing but the
session's own member crosses the seam.

The in-process back end, L{sockproto.chat.backends.memory.ChatServer},
answers with Deferreds that have already fired, so that tests stay
synchronous on a Clock.
"""

from typing import Dict, List, Sequence, Tuple

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from .events import ChatEvent, EventBatch

__all__ = [
    "ChatError",
    "IChatClient",
    "IChatMember",
    "IChatRoom",
    "IChatServer",
    "InvalidNickError",
    "NickError",
    "NickInUseError",
    "NickRegisteredError",
    "PasswordError",
]


class ChatError(Exception):
    """
    A request the chat cannot grant; its text is the one-line answer to
    the user.
    """


class NickError(ChatError):
    """
    A nickname the user cannot have; the subclasses say why, so that a
    front end can answer in its protocol's own terms (IRC's numerics).
    """


class InvalidNickError(NickError):
    """
    Not a nickname (L{sockproto.chat.names.NICK_RULE}), or the server's own.
    """


class NickInUseError(NickError):
    """
    Someone else has the nickname, or one that looks like it.
    """


class NickRegisteredError(NickError):
    """
    The nickname is registered, and no password was given.
    """


class PasswordError(NickError):
    """
    No password may be tried now (too many wrong ones from the address).
    """


class IChatMember(Interface):
    """
    Someone in the chat, as a back end sees a member of this process: where
    to deliver what happens in its room, and what it wants to be called.
    """

    nick = Attribute("The member's current nickname (str).")

    def deliver(batch: EventBatch) -> None:
        """
        Events of the member's room, in order, its own lines included.
        Must not raise for a member whose connection is gone: it does
        nothing then.
        """

    def receive(event: ChatEvent) -> None:
        """
        An event for this member alone: a private message.
        """


class IChatClient(IChatMember):
    """
    What a L{sockproto.chat.session.ChatSession} shows its user through: a
    front end renders each call on its own wire.
    """

    def notice(text: str) -> None:
        """
        A line from the server to this user alone.
        """

    def error(text: str) -> None:
        """
        An error about what this user asked for.
        """

    def history(room: str, events: Sequence[ChatEvent]) -> None:
        """
        The recent lines of C{room}, shown on entering it.
        """

    def close() -> None:
        """
        End the connection, once what was sent is out.
        """

    def nickChanged(nick: str, reason: str) -> None:
        """
        The back end changed this user's nickname to C{nick} (a claim lost
        while the chat network was away); tell the user why.
        """


class IChatRoom(Interface):
    """
    A room: its members, its recent history, and the fan-out to them.
    """

    name = Attribute("The room's name, without '#' (str).")

    def join(member: IChatMember) -> "Deferred[List[ChatEvent]]":
        """
        Add C{member} and announce it.

        @return: the room's recent history.
        @rtype: L{Deferred} firing with a list of L{ChatEvent}
        """

    def leave(member: IChatMember, reason: str) -> "Deferred[None]":
        """
        Remove C{member} and announce why it left; nothing more is
        delivered to it.  A room left empty may be forgotten.

        @rtype: L{Deferred} firing with None
        """

    def quit(member: IChatMember, reason: str) -> "Deferred[None]":
        """
        C{member} leaves the room because it leaves the chat (its
        connection ends), with C{reason}: announced as a quit, which IRC
        shows once for all the rooms the member was in.

        @rtype: L{Deferred} firing with None
        """

    def notice(member: IChatMember, text: str) -> "Deferred[None]":
        """
        Send C{text} from C{member} to the room as a notice: a line that
        nobody should answer automatically (IRC's C{NOTICE}).  Not kept in
        the history.

        @rtype: L{Deferred} firing with None
        """

    def say(member: IChatMember, text: str) -> "Deferred[None]":
        """
        Publish a line from C{member} to everyone in the room.

        @rtype: L{Deferred} firing with None
        @raise ChatError: (in the Deferred) if the line cannot be published.
        """

    def act(member: IChatMember, text: str) -> "Deferred[None]":
        """
        Publish an action (C{/me}) from C{member}.

        @rtype: L{Deferred} firing with None
        @raise ChatError: (in the Deferred) if it cannot be published.
        """

    def nicks() -> "Deferred[List[str]]":
        """
        The nicknames of the members, in the order they joined.

        Asked once a member's L{join} has fired, the answer is read after
        the join, and every change after the join (a nickname, an arrival)
        is delivered to the member: it misses nothing.  Asked before, on a
        shared back end, the answer can miss a change made meanwhile.

        @rtype: L{Deferred} firing with a list of str
        """


class IChatServer(Interface):
    """
    Nicknames and rooms.
    """

    name = Attribute("The server's name, shown in the welcome (str).")
    defaultRoom = Attribute("The name of the room everyone starts in (str).")
    reserved = Attribute(
        "A callable telling whether a nickname is registered, so that"
        " guest nicknames skip it."
    )

    def register(member: IChatMember) -> "Deferred[str]":
        """
        Give C{member} a free guest nickname.

        @rtype: L{Deferred} firing with the nickname (str)
        """

    def rename(member: IChatMember, nick: str) -> "Deferred[None]":
        """
        Change C{member}'s nickname to C{nick} and announce it, once, in
        each of its rooms.  C{member.nick} is the old nickname until the
        Deferred fires; the caller then changes it.

        @rtype: L{Deferred} firing with None
        @raise ChatError: (in the Deferred) if C{nick} is invalid or taken.
        """

    def unregister(member: IChatMember) -> "Deferred[None]":
        """
        Free C{member}'s nickname.

        @rtype: L{Deferred} firing with None
        """

    def inUse(nick: str) -> "Deferred[bool]":
        """
        Whether someone uses C{nick} (ignoring case).

        @rtype: L{Deferred} firing with a bool
        """

    def tell(member: IChatMember, nick: str, text: str) -> "Deferred[ChatEvent]":
        """
        Send C{text} privately from C{member} to whoever uses C{nick}
        (ignoring case).

        @return: the private event, as its recipient got it.
        @rtype: L{Deferred} firing with a L{ChatEvent}
        @raise ChatError: (in the Deferred) if nobody uses C{nick}.
        """

    def notify(member: IChatMember, nick: str, text: str) -> "Deferred[ChatEvent]":
        """
        L{tell}, as a notice (IRC's C{NOTICE} to a nickname).

        @rtype: L{Deferred} firing with a L{ChatEvent}
        @raise ChatError: (in the Deferred) if nobody uses C{nick}.
        """

    def room(name: str) -> "Deferred[IChatRoom]":
        """
        The room called C{name}, created if needed.

        @rtype: L{Deferred} firing with an L{IChatRoom}
        @raise ChatError: (in the Deferred) when it would be one room too
            many.
        """

    def rooms() -> "Deferred[List[Tuple[str, int]]]":
        """
        Each room's name and member count.

        @rtype: L{Deferred} firing with a list of (str, int)
        """

    def counts() -> Dict[str, float]:
        """
        What this process's part of the back end counts, for C{--metrics}:
        C{lines} (said by its clients), C{deliveries} (to them),
        C{members} (its members), C{rooms} (rooms with members here); a
        shared back end adds C{broker_up} (1 or 0) and C{broker_lag}
        (seconds).  At once, without a Deferred: it reads no network.
        """
