# -*- test-case-name: tests.test_chat_irc -*-
"""
How the IRC front end writes: one message, a user's mask, and a room
event as IRC says it, the same bytes for every client.
"""

import re
from typing import Optional

from ...events import ACTION, JOIN, LEAVE, MESSAGE, PRIVATE, ChatEvent

__all__ = [
    "CHANNEL_MODES",
    "HOST",
    "SERVER",
    "SERVER_NAME_RULE",
    "SERVICE",
    "USER_MODES",
    "format_event",
    "irc_line",
    "mask",
    "valid_server_name",
]

MAX_NICK = 16
MAX_ROOM = 32
SERVER = "sockproto.local"
"""The server's name by default (C{--server-name}), in the prefix of what it
says itself: with a dot, as clients tell a server from a user by it."""
SERVER_NAME_RULE = (
    "a host name with at least one dot, letters, digits, '-' and '.',"
    " 63 characters at most (irc.example.org)"
)
_SERVER_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
SERVICE = "sockproto"
"""The nickname of the server's own commands (C{PRIVMSG sockproto :who})."""
HOST = "sockproto"
"""The host part of every user's mask: it reveals nobody's address."""
USER_MODES = "i"
"""The user modes there are: C{i} (invisible), which changes nothing here."""
CHANNEL_MODES = "n"
"""The channel modes there are: C{n} (no messages from outside), always
set: only a member may speak in a room."""


def valid_server_name(name: str) -> bool:
    """
    Whether C{name} may be the server's name: L{SERVER_NAME_RULE}.
    """
    return len(name) <= 63 and _SERVER_NAME.fullmatch(name) is not None


def irc_line(prefix: Optional[str], command: str, *params: str) -> str:
    """
    One IRC message, without its CRLF.  The last of several parameters is
    sent as a trailing one (after C{:}), as servers do for texts; a lone
    one only when it must be.
    """
    words = [f":{prefix}", command] if prefix else [command]
    if params:
        *middle, last = params
        words += middle
        trailing = middle or not last or " " in last or last.startswith(":")
        words.append(":" + last if trailing else last)
    return " ".join(words)


def mask(nick: str) -> str:
    """
    A user's C{nick!user@host}: the same for everyone, revealing nothing.
    """
    return f"{nick}!{nick}@{HOST}"


def format_event(event: ChatEvent) -> str:
    """
    A room event or a private message as one IRC message (a nickname
    change is the protocol's, which shows each change once per client).
    """
    who = mask(event.nick)
    room = f"#{event.room}"
    if event.kind == MESSAGE:
        return irc_line(who, "PRIVMSG", room, event.text)
    if event.kind == ACTION:
        return irc_line(who, "PRIVMSG", room, f"\x01ACTION {event.text}\x01")
    if event.kind == JOIN:
        return irc_line(who, "JOIN", room)
    if event.kind == LEAVE:
        return irc_line(who, "PART", room, event.text)
    if event.kind == PRIVATE:
        return irc_line(who, "PRIVMSG", event.target, event.text)
    return irc_line(SERVER, "NOTICE", room, event.text)
