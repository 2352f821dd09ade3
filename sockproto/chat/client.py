# -*- test-case-name: tests.test_chat_client -*-
"""
The interactive chat client: standard input to the server, the server to
standard output (C{sockproto chat HOST PORT}).
"""

import platform
import sys
import threading
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    ISSLTransport,
)
from twisted.internet.protocol import Protocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ..lines import LineParser, LineTooLong
from ..text import decode_line

__all__ = [
    "ChatClientProtocol",
    "KeyboardProtocol",
    "NickRefusedError",
    "ServerClosedError",
    "TLSHandshakeError",
    "TerminalKeyboard",
    "terminal_keyboard",
]


@implementer(IHandshakeListener)
class ChatClientProtocol(Protocol):
    """
    The network side: each line from the server goes to C{output}, cleaned
    of control characters.  A line longer than L{maxLineLength} is shown
    as a note of its length: whatever the server sends, the client stays.

    @ivar done: fires when the server closes the connection cleanly, or
        fails with the reason it was lost.  Over TLS, a connection lost
        before its handshake finished always fails it, even after
        C{/quit} (the end of standard input): nothing was said.
    """

    maxLineLength = 1 << 16
    transport: Any
    secured = False
    """True once a TLS handshake has finished."""
    awaitingNick = False
    """True from asking for the nickname until the server answers."""

    def __init__(
        self, output: Any, nick: Optional[str] = None, password: Optional[str] = None
    ) -> None:
        self.output = output
        self.nick = nick
        self.password = password
        self.done: Deferred[None] = Deferred()
        self.parser = LineParser(self.maxLineLength, sys.maxsize)

    def connectionMade(self) -> None:
        if self.nick:
            self.awaitingNick = True
            password = f" {self.password}" if self.password else ""
            self.transport.write(f"/nick {self.nick}{password}\n".encode())

    def dataReceived(self, data: bytes) -> None:
        for event in self.parser.feed(data):
            if isinstance(event, bytes):
                self.lineReceived(event)
            elif isinstance(event, LineTooLong):
                self.show(f"[line too long: {event.length} bytes, not shown]")

    def lineReceived(self, line: bytes) -> None:
        """
        Called with each line from the server.
        """
        text = decode_line(line)
        if self.awaitingNick:
            self.checkNickAnswer(text)
        self.show(text)

    def checkNickAnswer(self, text: str) -> None:
        """
        Called with each line while the nickname asked for is not answered:
        an error means the server refused it, and the client leaves.
        """
        if text.startswith("-!- error: "):
            self.awaitingNick = False
            if not self.done.called:
                reason = text[len("-!- error: ") :]
                self.done.errback(NickRefusedError(reason))
            self.transport.loseConnection()
        elif text.endswith(f" is now known as {self.nick}"):
            self.awaitingNick = False

    def show(self, text: str) -> None:
        """
        Write one line of C{text} to the output.
        """
        self.output.write((text + "\n").encode("utf-8"))

    quitting = False

    def sendText(self, text: str) -> None:
        """
        Send one line typed by the user.
        """
        if text.split(" ", 1)[0].lower() == "/quit":
            self.quitting = True
        self.transport.write(text.encode("utf-8") + b"\n")

    def quit(self) -> None:
        """
        Leave: send /quit and let the server close.
        """
        if not (self.done.called or self.quitting or self.transport.disconnecting):
            self.sendText("/quit")

    def handshakeCompleted(self) -> None:
        """
        Called by a TLS transport once the server's certificate is checked.
        """
        self.secured = True

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if self.done.called:
            return
        if ISSLTransport.providedBy(self.transport) and not self.secured:
            if reason.check(ConnectionDone):
                reason = Failure(TLSHandshakeError("the server closed the handshake"))
            self.done.errback(reason)
        elif self.quitting:
            # After /quit, how the server closed does not matter.
            self.done.callback(None)
        elif reason.check(ConnectionDone):
            self.done.errback(ServerClosedError("the server closed the connection"))
        else:
            self.done.errback(reason)


class NickRefusedError(Exception):
    """
    The server refused the nickname asked for; the message is its reason.
    """


class TLSHandshakeError(Exception):
    """
    The connection ended before its TLS handshake was done.
    """


class ServerClosedError(Exception):
    """
    The server closed the chat connection without being asked to.
    """


@implementer(IHalfCloseableProtocol)
class KeyboardProtocol(LineOnlyReceiver):
    """
    The standard input side: each line typed goes to the chat; end of
    input leaves it, while standard output stays open for the last lines.

    @ivar closed: fires once standard input and output are both closed.
    """

    delimiter = b"\n"
    transport: Any

    def __init__(self, chat: ChatClientProtocol) -> None:
        self.chat = chat
        self.closed: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not self.chat.done.called:
            self.chat.sendText(text)

    def readConnectionLost(self) -> None:
        """
        End of input: leave the chat.
        """
        self.chat.quit()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.chat.quit()
        self.closed.callback(None)


class TerminalKeyboard:
    """
    The standard input side on a terminal: lines are edited with readline
    (history with the arrow keys, Ctrl-A/Ctrl-E, ...) in a thread of their
    own, and a line from the server is printed above the line being typed,
    which stays as it was.  The terminal's settings are put back on
    L{close}.

    @ivar closed: fires once the keyboard is closed.
    """

    def __init__(self, chat: ChatClientProtocol, reactor: Any) -> None:
        import readline  # noqa: F401 (input() edits lines with it)
        import termios

        self.chat = chat
        self.reactor = reactor
        self.fd = sys.stdin.fileno()
        self.settings = termios.tcgetattr(self.fd)
        self.closed: Deferred[None] = Deferred()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                line = input()
            except (EOFError, OSError, ValueError):
                break
            self.reactor.callFromThread(self._typed, line)
        self.reactor.callFromThread(self.chat.quit)

    def _typed(self, line: str) -> None:
        if not self.chat.done.called:
            self.chat.sendText(line)

    def write(self, data: bytes) -> None:
        """
        Print C{data} (whole lines) above the line being typed.
        """
        import readline

        text = data.decode("utf-8", "replace")
        # Over the line being typed, which then comes back below as it was
        # (readline.redisplay() would not draw it again: it thinks it is
        # still on the screen).
        sys.stdout.write("\r\x1b[K" + text + readline.get_line_buffer())
        sys.stdout.flush()

    def loseConnection(self) -> None:
        self.close()

    def close(self) -> None:
        """
        Put the terminal back as it was.
        """
        import termios

        if self.closed.called:
            return
        sys.stdout.write("\r\x1b[K")
        sys.stdout.flush()
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.settings)
        self.closed.callback(None)


def terminal_keyboard(chat: ChatClientProtocol, reactor: Any) -> Optional[Any]:
    """
    A L{TerminalKeyboard} when standard input and output are a terminal
    and GNU readline is there (CPython), else None (then lines are read as
    they come).
    """
    if platform.python_implementation() == "PyPy":
        # PyPy's readline (pyrepl) draws the line itself, and its buffer
        # read from another thread lags behind the screen: read plainly.
        return None
    try:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return None
        return TerminalKeyboard(chat, reactor)
    except Exception:  # no readline, no termios, not a real terminal
        return None
