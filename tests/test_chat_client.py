"""
The interactive chat client's network side: whatever the server sends, it
shows something sensible and stays connected.
"""

import io

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat.client import ChatClientProtocol


def client() -> "tuple[ChatClientProtocol, io.BytesIO, StringTransport]":
    output = io.BytesIO()
    protocol = ChatClientProtocol(output)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, output, transport


class ChatClientTests(SynchronousTestCase):
    def test_lines_are_shown_cleaned(self) -> None:
        protocol, output, _ = client()
        protocol.dataReceived(b"<bob> hi\x1b[2J\r\n-!- note\n")
        self.assertEqual(output.getvalue(), b"<bob> hi\n-!- note\n")

    def test_a_huge_line_is_noted_and_the_client_stays(self) -> None:
        protocol, output, transport = client()
        protocol.dataReceived(b"-!- rooms: " + b"#r (1), " * 20000 + b"\r\n")
        protocol.dataReceived(b"<bob> after\r\n")
        self.assertEqual(
            output.getvalue(),
            b"[line too long: 160012 bytes, not shown]\n<bob> after\n",
        )
        self.assertFalse(transport.disconnecting)

    @given(st.lists(st.integers(1, 40), max_size=10))
    def test_any_chunking_shows_the_same(self, cuts: "list[int]") -> None:
        data = b"<a> one\r\n-!- two\r\n" + b"x" * 70000 + b"\n<b> three\n"
        protocol, output, _ = client()
        start = 0
        for cut in cuts:
            protocol.dataReceived(data[start : start + cut])
            start += cut
        protocol.dataReceived(data[start:])
        self.assertEqual(
            output.getvalue(),
            b"<a> one\n-!- two\n[line too long: 70000 bytes, not shown]\n<b> three\n",
        )
