# -*- test-case-name: tests.test_chat_wire -*-
"""
Chat events as they travel between processes: compact, versioned JSON.

JSON rather than msgpack: the standard library reads and writes it on
CPython and PyPy alike with no extra dependency, C{redis-cli monitor}
shows it as it is, and a bot in any language can read a room's channel.

A message is C{{"v": 1, "e": [[KIND, ROOM, NICK, TEXT, TARGET], ...]}}.
Nothing read from the broker is trusted: L{decode_events} refuses
anything malformed or oversized, and cleans every text as a client's
line is cleaned.
"""

import json
from typing import List, Sequence

from ....text import sanitize
from ...events import (
    ACTION,
    JOIN,
    LEAVE,
    MESSAGE,
    NICK,
    NOTICE,
    PRIVATE,
    PRIVATE_NOTICE,
    QUIT,
    ChatEvent,
)
from ...names import valid_nick, valid_room

__all__ = ["MalformedMessageError", "MAX_MESSAGE", "decode_events", "encode_events"]

VERSION = 1
MAX_MESSAGE = 1024 * 1024
"""The longest message read from the broker, in bytes."""
MAX_TEXT = 8192
"""The longest text of one event, in characters."""
MAX_TIME = 2.0**40
"""Past any real time of an event, in seconds since the epoch."""

_KINDS = frozenset(
    {MESSAGE, ACTION, NOTICE, JOIN, LEAVE, QUIT, NICK, PRIVATE, PRIVATE_NOTICE}
)
_PRIVATE = frozenset({PRIVATE, PRIVATE_NOTICE})
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class MalformedMessageError(ValueError):
    """
    A message from the broker that is not a valid batch of events; its
    text says why.
    """


def encode_events(events: Sequence[ChatEvent]) -> bytes:
    """
    The broker message carrying C{events}.
    """
    rows = [
        [e.kind, e.room, e.nick, e.text, e.target, round(e.time, 3)] for e in events
    ]
    return _dumps({"v": VERSION, "e": rows}).encode("utf-8")


def decode_events(data: bytes) -> List[ChatEvent]:
    """
    The events of a broker message.

    @raise MalformedMessageError: if it is too long, not JSON, of another
        version, or holds an event that is not valid.
    """
    if len(data) > MAX_MESSAGE:
        raise MalformedMessageError(f"{len(data)} bytes, more than {MAX_MESSAGE}")
    try:
        message = json.loads(data.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError too
        raise MalformedMessageError(f"not JSON: {e}") from None
    if not isinstance(message, dict) or message.get("v") != VERSION:
        raise MalformedMessageError("not a version 1 message")
    rows = message.get("e")
    if not isinstance(rows, list):
        raise MalformedMessageError("no event list")
    return [_event(row) for row in rows]


def _event(row: object) -> ChatEvent:
    # Checked field by field with type(): every event of every message
    # from the broker comes through here.
    if type(row) is not list or len(row) not in (5, 6):
        raise MalformedMessageError(f"not an event: {str(row)[:80]!r}")
    kind, room, nick, text, target = row[0], row[1], row[2], row[3], row[4]
    if not (
        type(kind) is str
        and type(room) is str
        and type(nick) is str
        and type(text) is str
        and type(target) is str
    ):
        raise MalformedMessageError(f"not an event: {str(row)[:80]!r}")
    time = row[5] if len(row) == 6 else 0.0
    if type(time) is not float and type(time) is not int or not 0 <= time < MAX_TIME:
        raise MalformedMessageError(f"invalid time {str(time)[:20]!r}")
    if kind not in _KINDS:
        raise MalformedMessageError(f"unknown kind {kind[:20]!r}")
    if not valid_nick(nick) or (target and not valid_nick(target)):
        raise MalformedMessageError(f"invalid nickname {nick[:20]!r}")
    if (kind in _PRIVATE) != (room == "") or (room and valid_room(room) != room):
        raise MalformedMessageError(f"invalid room {room[:40]!r}")
    if len(text) > MAX_TEXT:
        raise MalformedMessageError(f"a text of {len(text)} characters")
    if kind == NICK and not valid_nick(text):
        raise MalformedMessageError(f"invalid new nickname {text[:20]!r}")
    return ChatEvent(kind, room, nick, sanitize(text), target, float(time))
