from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from sockproto.text import decode_line, format_address, sanitize


class SanitizeTests(SynchronousTestCase):
    def test_plain_text_is_unchanged(self) -> None:
        self.assertEqual(sanitize("héllo, wörld ✓"), "héllo, wörld ✓")

    def test_escape_sequences_are_removed_whole(self) -> None:
        self.assertEqual(sanitize("\x1b[2J\x1b[31mred\x1b[0m"), "red")
        self.assertEqual(sanitize("\x1b]0;title\x07text"), "text")

    def test_bell_backspace_and_c1_controls_are_removed(self) -> None:
        self.assertEqual(sanitize("a\x07b\x08c\x9bd\x7f"), "abcd")

    def test_irc_colours_go_with_their_numbers(self) -> None:
        self.assertEqual(sanitize("\x0304,01red\x03 plain"), "red plain")
        self.assertEqual(sanitize("\x034green \x0312,5blue"), "green blue")
        self.assertEqual(sanitize("\x03,5 a comma stays"), ",5 a comma stays")
        self.assertEqual(sanitize("\x04ff0000,00ff00hex\x04"), "hex")
        self.assertEqual(sanitize("year \x032026"), "year 26")  # two digits at most
        formatting = "\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x16rev\x0f"
        self.assertEqual(
            sanitize(formatting + "\x11mono\x1estrike"),
            "bold italic under revmonostrike",
        )

    def test_tab_becomes_space(self) -> None:
        self.assertEqual(sanitize("a\tb"), "a b")

    def test_bidi_override_is_removed(self) -> None:
        self.assertEqual(sanitize("abc\u202edef"), "abcdef")

    def test_invisible_and_reordering_format_characters_are_removed(self) -> None:
        hidden = [
            "\u200e",  # LRM
            "\u200f",  # RLM
            "\u061c",  # ALM
            "\u200b",  # ZWSP
            "\u200c",  # ZWNJ
            "\u200d",  # ZWJ
            "\u2060",  # WJ
            "\ufeff",  # BOM
            "\u2028",  # LINE SEPARATOR
            "\u2029",  # PARAGRAPH SEPARATOR
            "\U000e0041",  # TAG LATIN CAPITAL LETTER A
            "\ufff9",  # INTERLINEAR ANNOTATION ANCHOR
            "\ufffe",
            "\uffff",
        ]
        for char in hidden:
            self.assertEqual(sanitize(f"a{char}b"), "ab", repr(char))

    def test_combining_marks_are_capped(self) -> None:
        self.assertEqual(sanitize("e" + "\u0301" * 170), "e" + "\u0301" * 4)
        self.assertEqual(sanitize("e\u0301\u0302"), "e\u0301\u0302")

    @given(st.text())
    def test_result_has_no_control_characters(self, text: str) -> None:
        cleaned = sanitize(text)
        self.assertFalse(any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in cleaned))
        self.assertNotIn("\x1b", cleaned)


class DecodeTests(SynchronousTestCase):
    def test_invalid_utf8_becomes_replacement_character(self) -> None:
        self.assertEqual(decode_line(b"a\xffb"), "a\ufffdb")

    @given(st.binary())
    def test_never_raises(self, data: bytes) -> None:
        decode_line(data)


class FormatAddressTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        self.assertEqual(
            format_address(IPv4Address("TCP", "127.0.0.1", 80)), "127.0.0.1:80"
        )

    def test_ipv6_in_brackets(self) -> None:
        self.assertEqual(format_address(IPv6Address("TCP", "::1", 80)), "[::1]:80")

    def test_unix(self) -> None:
        self.assertEqual(format_address(UNIXAddress(b"/tmp/s")), "unix:/tmp/s")


class UnixPeerTests(SynchronousTestCase):
    def test_unnamed_unix_peer_shows_its_pid_and_uid(self) -> None:
        import os
        import socket

        if not hasattr(socket, "SO_PEERCRED"):
            raise SkipTest("SO_PEERCRED is Linux's: this system has no such option")
        ours, theirs = socket.socketpair(socket.AF_UNIX)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)

        class Transport:
            socket = ours

        self.assertEqual(
            format_address(UNIXAddress(None), Transport()),
            f"unix:(pid {os.getpid()} uid {os.getuid()})",
        )

    def test_unnamed_unix_peer_without_a_socket(self) -> None:
        self.assertEqual(format_address(UNIXAddress(None)), "unix:(unnamed)")
