# -*- test-case-name: tests.test_chat_irc -*-
"""
How the IRC front end writes: one message, a user's mask, and a room
event as IRC says it, the same bytes for every client.
"""

import re
import time
from typing import List, Optional

from ...events import (
    ACTION,
    JOIN,
    LEAVE,
    MESSAGE,
    NOTICE,
    PRIVATE,
    PRIVATE_NOTICE,
    ChatEvent,
)

__all__ = [
    "CHANNEL_MODES",
    "HOST",
    "SERVER",
    "SERVER_NAME_RULE",
    "SERVICE",
    "TAG_CAPS",
    "USER_MODES",
    "format_event",
    "irc_line",
    "irc_lines",
    "split_text",
    "time_tag",
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


TAG_CAPS = frozenset(["server-time", "account-tag"])
"""The IRCv3 capabilities that put tags on messages."""
MAX_MESSAGE = 510
"""Bytes of an IRC message without its CRLF (RFC 2812 2.3: 512 with it)."""


def split_text(text: str, budget: int) -> List[str]:
    """
    C{text} in pieces of at most C{budget} bytes of UTF-8, cut at a space
    when one is in the second half of a piece, else between characters:
    never inside one.
    """
    data = text.encode("utf-8")
    budget = max(budget, 4)  # room for any one character
    pieces = []
    while len(data) > budget:
        cut = budget
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: back off
            cut -= 1
        space = data.rfind(b" ", budget // 2, cut)
        if space > 0:
            cut = space
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut + 1 :] if space > 0 else data[cut:]
    pieces.append(data.decode("utf-8"))
    return pieces


def irc_lines(prefix: Optional[str], command: str, *params: str, wrap: str = "") -> str:
    """
    L{irc_line}, as several messages (joined by CRLF) when one would be
    over L{MAX_MESSAGE} bytes: the last parameter, a text, is split with
    L{split_text}, each piece in a message of its own.  C{wrap} goes on
    both sides of each piece (C{\x01}, for a CTCP C{ACTION}; its
    C{ACTION } is then the start of the text).
    """
    line = irc_line(prefix, command, *params)
    if len(line) * 4 <= MAX_MESSAGE or len(line.encode("utf-8")) <= MAX_MESSAGE:
        return line
    *middle, text = params
    head = irc_line(prefix, command, *middle, "")  # ends with " :"
    lead = ""
    if wrap and text.startswith(wrap) and text.endswith(wrap):
        text = text[len(wrap) : -len(wrap)]
        lead, _, text = text.partition(" ")
        lead = wrap + lead + " "
    budget = MAX_MESSAGE - len(head.encode("utf-8")) - len(lead) - len(wrap)
    return "\r\n".join(
        head + lead + piece + (wrap if lead else "")
        for piece in split_text(text, budget)
    )


def time_tag(when: float) -> str:
    """
    The IRCv3 C{server-time} tag of a message that happened at C{when}
    (seconds since the epoch): C{time=2025-12-03T18:20:00.250Z}.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"time={stamp}.{int(when * 1000) % 1000:03d}Z"


def mask(nick: str) -> str:
    """
    A user's C{nick!user@host}: the same for everyone, revealing nothing.
    """
    return f"{nick}!{nick}@{HOST}"


def format_event(event: ChatEvent) -> str:
    """
    A room event or a private message as IRC messages: one, or several
    for a text too long for one (L{irc_lines}).  (A nickname change is the
    protocol's, which shows each change once per client.)
    """
    who = mask(event.nick)
    room = f"#{event.room}"
    if event.kind == MESSAGE:
        return irc_lines(who, "PRIVMSG", room, event.text)
    if event.kind == ACTION:
        text = f"\x01ACTION {event.text}\x01"
        return irc_lines(who, "PRIVMSG", room, text, wrap="\x01")
    if event.kind == JOIN:
        return irc_line(who, "JOIN", room)
    if event.kind == LEAVE:  # one PART, its reason cut if need be
        return irc_lines(who, "PART", room, event.text).split("\r\n", 1)[0]
    if event.kind == NOTICE:
        return irc_lines(who, "NOTICE", room, event.text)
    if event.kind == PRIVATE:
        return irc_lines(who, "PRIVMSG", event.target, event.text)
    if event.kind == PRIVATE_NOTICE:
        return irc_lines(who, "NOTICE", event.target, event.text)
    return irc_lines(SERVER, "NOTICE", room, event.text)
