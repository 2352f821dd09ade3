"""
The behaviour suite (L{sockproto.testing.behaviour}) for every front end
on the in-process back end, a bare session, and the line front end on a
back end that answers late.  The Redis back end runs it in
C{tests/test_chat_shared.py}.
"""

from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from sockproto.chat import ChatServer, IChatClient, IChatServer
from sockproto.testing import ChatOnClock
from sockproto.testing.behaviour import (
    BrowserUser,
    ChatBehaviour,
    IrcUser,
    LateChatServer,
    LineUser,
    SessionUser,
    User,
)


class LineFrontEndInProcessTests(ChatBehaviour, TestCase):
    """
    The line protocol, on the in-process back end.
    """

    def setUp(self) -> None:
        super().setUp()
        self.chat = ChatOnClock(self.server, self.clock)

    def connect(self) -> User:
        return LineUser(self.chat)


# --- the web page's WebSocket -------------------------------------------------


class WebFrontEndInProcessTests(ChatBehaviour, TestCase):
    """
    The web page's WebSocket, on the in-process back end.
    """

    def setUp(self) -> None:
        super().setUp()
        self.chat = ChatOnClock(self.server, self.clock)

    def connect(self) -> User:
        return BrowserUser(self.chat)


# --- a session with no front end at all -------------------------------------


class IrcFrontEndInProcessTests(ChatBehaviour, TestCase):
    """
    IRC clients, on the in-process back end.
    """

    def setUp(self) -> None:
        super().setUp()
        self.chat = ChatOnClock(self.server, self.clock)

    def connect(self) -> User:
        return IrcUser(self.chat)


class SessionInProcessTests(ChatBehaviour, TestCase):
    """
    A bare session, on the in-process back end: the chat needs no
    transport.
    """

    def connect(self) -> User:
        return SessionUser(self.server)

    def test_the_recording_client_is_a_chat_client(self) -> None:
        user = SessionUser(self.server)
        verifyObject(IChatClient, user.client)


class LineFrontEndOnALateBackEndTests(ChatBehaviour, TestCase):
    """
    The line protocol on a back end whose every answer comes later: what
    users see is the same, in the same order.
    """

    def newServer(self, clock: Clock) -> IChatServer:
        return LateChatServer(ChatServer("behaviour", clock), clock)  # type: ignore

    def setUp(self) -> None:
        super().setUp()
        self.chat = ChatOnClock(self.server, self.clock)

    def connect(self) -> User:
        return LineUser(self.chat)

    def turn(self) -> "Deferred[None]":
        for _ in range(50):
            self.clock.advance(0.01)
        return succeed(None)

    def test_the_server_implements_its_interface(self) -> None:
        verifyObject(IChatServer, self.server._wrapped)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_lines_typed_while_a_request_is_answered_keep_their_order(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/nick carol")
        alice.send("one")
        alice.send("/join games")
        alice.send("two")
        yield self.turn()
        self.assertEqual(
            bob.seen(),
            [
                ("nick", "alice", "carol"),
                ("message", "carol", "one"),
                ("leave", "carol", "lobby", "joined #games"),
            ],
        )
        self.assertIn(("message", "carol", "two"), alice.seen())
