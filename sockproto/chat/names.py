# -*- test-case-name: tests.test_chat_names -*-
"""
The chat's rules for names: which nicknames and room names are valid,
which nicknames look alike, and which belong to the server itself.  Every
front end and back end checks names with these, typed or read from Redis.
"""

import re
from typing import Optional

__all__ = [
    "NICK_RULE",
    "SERVICE_NICKS",
    "nick_key",
    "service_nick",
    "valid_nick",
    "valid_room",
]

NICK_RULE = "1 to 16 ASCII letters, digits, _ or -, starting with a letter"
_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}\Z")
_ROOM = re.compile(r"#?([A-Za-z0-9_-]{1,32})\Z")
_LOOK_ALIKE = str.maketrans({"1": "l", "i": "l", "|": "l", "0": "o"})
_LOOK_ALIKE_PAIRS = (("rn", "m"), ("vv", "w"))


def valid_nick(nick: str) -> bool:
    """
    Whether C{nick} follows L{NICK_RULE}: ASCII only, so that no letter
    from another script can pass for a Latin one.
    """
    return _NICK.match(nick) is not None


def nick_key(nick: str) -> str:
    """
    What two nicknames that look alike have in common: lower case, with
    I, l and 1 folded together, O and 0, "rn" and "m", "vv" and "w".  Two
    nicknames with the same key cannot be used at once, and a registered
    nickname protects every nickname with its key.
    """
    key = nick.lower().translate(_LOOK_ALIKE)
    for pair, letter in _LOOK_ALIKE_PAIRS:
        key = key.replace(pair, letter)
    return key


SERVICE_NICKS = ("sockproto",)
"""The server's own names, which users C{/msg} (IRC: C{PRIVMSG sockproto}):
nobody may take them, nor any nickname that looks like them."""


def service_nick(nick: str) -> bool:
    """
    Whether C{nick} is, or looks like, one of L{SERVICE_NICKS}.
    """
    return nick_key(nick) in _SERVICE_KEYS


def valid_room(name: str) -> Optional[str]:
    """
    The room name C{name} stands for (lower case, no '#'), or None.
    """
    match = _ROOM.match(name)
    return match.group(1).lower() if match else None


_SERVICE_KEYS = frozenset(nick_key(nick) for nick in SERVICE_NICKS)
