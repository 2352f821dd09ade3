# -*- test-case-name: tests.test_chat_client -*-
"""
The interactive chat client: standard input to the server, the server to
standard output (C{sockproto chat HOST PORT}).
"""

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ..text import decode_line

__all__ = ["ChatClientProtocol", "KeyboardProtocol"]


class ChatClientProtocol(LineOnlyReceiver):
    """
    The network side: each line from the server goes to C{output}, cleaned
    of control characters.

    @ivar done: fires when the connection closes.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1 << 16
    transport: Any

    def __init__(self, output: Any, nick: Optional[str] = None) -> None:
        self.output = output
        self.nick = nick
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self.nick:
            self.sendText(f"/nick {self.nick}")

    def lineReceived(self, line: bytes) -> None:
        self.output.write((decode_line(line.rstrip(b"\r")) + "\n").encode("utf-8"))

    def sendText(self, text: str) -> None:
        """
        Send one line typed by the user.
        """
        self.transport.write(text.encode("utf-8") + b"\n")

    def quit(self) -> None:
        """
        Leave: send /quit and let the server close.
        """
        if not self.done.called and not self.transport.disconnecting:
            self.sendText("/quit")

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if not self.done.called:
            self.done.callback(None)


class KeyboardProtocol(LineOnlyReceiver):
    """
    The standard input side: each line typed goes to the chat; end of
    input leaves it.
    """

    delimiter = b"\n"
    transport: Any

    def __init__(self, chat: ChatClientProtocol) -> None:
        self.chat = chat

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not self.chat.done.called:
            self.chat.sendText(text)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.chat.quit()
