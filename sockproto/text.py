# -*- test-case-name: tests.test_text -*-
"""
Turning bytes from the network into text that is safe to show to a person.
"""

import re
import unicodedata

__all__ = ["decode_line", "format_address", "sanitize"]

# CSI and OSC sequences (colours, cursor moves, window titles, ...).
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-_]"  # other two-character escapes
)

# Bidirectional overrides and isolates: they reorder the text that follows.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _keep(char: str) -> bool:
    return unicodedata.category(char) != "Cc" and char not in _BIDI_CONTROLS


def sanitize(text: str) -> str:
    """
    Remove terminal escape sequences and control characters from C{text}.

    Tabs become spaces; every other control character (C0, DEL, C1) and
    every bidirectional override is dropped, so that the text cannot clear,
    recolour, move the cursor of or beep the terminal that shows it.
    """
    if text.isprintable():
        return text
    text = _ESCAPE_SEQUENCE.sub("", text).replace("\t", " ")
    return "".join(char for char in text if _keep(char))


def decode_line(data: bytes) -> str:
    """
    Decode bytes from the network as UTF-8 and L{sanitize} them.

    Invalid UTF-8 becomes U+FFFD; this never raises.
    """
    return sanitize(data.decode("utf-8", "replace"))


def format_address(address: object) -> str:
    """
    Format an L{IAddress} the way people type it: C{127.0.0.1:80},
    C{[::1]:80}, C{unix:/path}.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return f"unix:{name}" if name else "unix:(unnamed)"
    return str(address)
