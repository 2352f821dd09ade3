"""
The seams of the chat: a member (a connection, whatever its protocol), a
room, and the server that holds nicknames and rooms.

The in-process implementations are L{sockproto.chat.rooms.ChatServer} and
L{sockproto.chat.rooms.ChatRoom}; one shared by several processes through
a message broker would provide the same interfaces.
"""

from typing import List, Optional, Sequence, Tuple

from zope.interface import Attribute, Interface

from .events import ChatEvent, EventBatch

__all__ = ["ChatError", "IChatMember", "IChatRoom", "IChatServer"]


class ChatError(Exception):
    """
    A request the chat cannot grant; its text is the one-line answer to
    the user.
    """


class IChatMember(Interface):
    """
    Someone in the chat: one connection of any front end.
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


class IChatRoom(Interface):
    """
    A room: its members, its recent history, and the fan-out to them.
    """

    name = Attribute("The room's name, without '#' (str).")

    def join(member: IChatMember) -> Sequence[ChatEvent]:
        """
        Add C{member}, announce it, and return the recent history for it.
        """

    def leave(member: IChatMember, reason: str) -> None:
        """
        Remove C{member} and announce why it left; nothing more is
        delivered to it.  A room left empty may be forgotten.
        """

    def say(member: IChatMember, text: str) -> None:
        """
        Publish a line from C{member} to everyone in the room.
        """

    def act(member: IChatMember, text: str) -> None:
        """
        Publish an action (C{/me}) from C{member}.
        """

    def renamed(member: IChatMember, old: str) -> None:
        """
        Announce that C{member}, formerly C{old}, changed its nickname.
        """

    def nicks() -> List[str]:
        """
        The nicknames of the members, in the order they joined.
        """

    def flush() -> None:
        """
        Deliver what the room has queued for its members now.  A front end
        calls it before writing directly to a member, to keep order.
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

    def register(member: IChatMember) -> str:
        """
        Give C{member} a free guest nickname and return it.
        """

    def rename(member: IChatMember, nick: str) -> Optional[str]:
        """
        Change C{member}'s nickname: None if done, else why not.
        """

    def unregister(member: IChatMember) -> None:
        """
        Free C{member}'s nickname.
        """

    def find(nick: str) -> Optional[IChatMember]:
        """
        The member using C{nick} (ignoring case), if any.
        """

    def room(name: str) -> IChatRoom:
        """
        The room called C{name}, created if needed.

        @raise ChatError: when it would be one room too many.
        """

    def rooms() -> List[Tuple[str, int]]:
        """
        Each room's name and member count.
        """

    def flush() -> None:
        """
        Deliver what every room has queued.
        """
