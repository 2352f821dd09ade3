from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from sockproto.text import decode_line, format_address, sanitize


class SanitizeTests(SynchronousTestCase):
    def test_plain_text_is_unchanged(self) -> None:
        self.assertEqual(sanitize("héllo, wörld ✓"), "héllo, wörld ✓")

    def test_escape_sequences_are_removed_whole(self) -> None:
        self.assertEqual(sanitize("\x1b[2J\x1b[31mred\x1b[0m"), "red")
        self.assertEqual(sanitize("\x1b]0;title\x07text"), "text")

    def test_bell_backspace_and_c1_controls_are_removed(self) -> None:
        self.assertEqual(sanitize("a\x07b\x08c\x9bd\x7f"), "abcd")

    def test_tab_becomes_space(self) -> None:
        self.assertEqual(sanitize("a\tb"), "a b")

    def test_bidi_override_is_removed(self) -> None:
        self.assertEqual(sanitize("abc\u202edef"), "abcdef")

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
