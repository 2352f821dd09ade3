# -*- test-case-name: tests.test_text -*-
"""
Turning bytes from the network into text that is safe to show to a person.
"""

import re
import socket
import struct
import unicodedata
from typing import Any, Optional

__all__ = [
    "MAX_COMBINING",
    "decode_line",
    "escape_for_log",
    "format_address",
    "sanitize",
]

# CSI and OSC sequences (colours, cursor moves, window titles, ...).
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-_]"  # other two-character escapes
    # mIRC colours, with their numbers: ^C, ^Cfg, ^Cfg,bg (one or two
    # digits each), and hex colours ^Drrggbb[,rrggbb]; the other formatting
    # characters (bold, italics, ...) are controls, dropped below.
    r"|\x03(?:\d{1,2}(?:,\d{1,2})?)?"
    r"|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
)

# Controls (Cc), format characters (Cf: bidi marks and overrides, zero-width
# spaces and joiners, BOM, tags, interlinear annotations), line and
# paragraph separators, and lone surrogates: each hides, reorders or breaks
# the text around it.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

MAX_COMBINING = 4
"""Combining marks kept on one character; more are dropped (no 'Zalgo')."""


def escape_for_log(text: str) -> str:
    """
    C{text} from a peer, fit for one log line: every character that is not
    printable (line breaks, controls, format characters, separators) is
    written as a Python escape (C{\\n} as C{\\x0a}), so that no text can
    start a log line of its own.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c == " " or c.isprintable() else _escape_char_code(ord(c)) for c in text
    )


def _escape_char_code(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _clean(text: str) -> str:
    kept = []
    marks = 0
    for char in text:
        category = unicodedata.category(char)
        if category in _DROPPED_CATEGORIES or _noncharacter(ord(char)):
            continue
        if category in ("Mn", "Me"):
            marks += 1
            if marks > MAX_COMBINING:
                continue
        else:
            marks = 0
        kept.append(char)
    return "".join(kept)


def sanitize(text: str) -> str:
    """
    Remove terminal escape sequences, control and format characters from
    C{text}.

    Tabs become spaces; an IRC colour code goes with its numbers (so no
    stray digits are left); every other control character (C0, DEL, C1), every
    format character (bidirectional marks and overrides, zero-width
    characters, BOM, tag characters), the line and paragraph separators,
    noncharacters and lone surrogates are dropped, and a character keeps at
    most L{MAX_COMBINING} combining marks.  The text then cannot clear,
    recolour, move the cursor of or beep the terminal that shows it, nor
    hide or reorder what is around it.
    """
    if text.isascii() and text.isprintable():
        return text
    text = _ESCAPE_SEQUENCE.sub("", text).replace("\t", " ")
    return _clean(text)


def decode_line(data: bytes) -> str:
    """
    Decode bytes from the network as UTF-8 and L{sanitize} them.

    Invalid UTF-8 becomes U+FFFD; this never raises.
    """
    return sanitize(data.decode("utf-8", "replace"))


def format_address(address: object, transport: Optional[Any] = None) -> str:
    """
    Format an L{IAddress} the way people type it: C{127.0.0.1:80},
    C{[::1]:80}, C{unix:/path}.  An unnamed UNIX socket peer is shown with
    its process and user ids when C{transport}'s socket can tell them
    (C{SO_PEERCRED}).
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    if not hasattr(address, "name"):
        return str(address)
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if name:
        return f"unix:{name}"
    credentials = _peer_credentials(transport)
    if credentials is not None:
        return "unix:(pid {} uid {})".format(*credentials)
    return "unix:(unnamed)"


def _peer_credentials(transport: Optional[Any]) -> Optional[Any]:
    option = getattr(socket, "SO_PEERCRED", None)
    sock = getattr(transport, "socket", None)
    if option is None or sock is None:
        return None
    try:
        pid, uid, _ = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, option, 12)
        )
    except (OSError, struct.error):
        return None
    return pid, uid


def plural(count: int, noun: str) -> str:
    """
    C{count} and C{noun}, with an "s" unless C{count} is 1: "1 line",
    "2 lines".
    """
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
