# -*- test-case-name: tests.test_chat_behaviour -*-
"""
The chat's behaviour suite, written once and run for every front end on
every back end: ship it, and a front end or back end of your own runs it
from the installed package.

L{ChatBehaviour} states what users see, as plain tuples (C{("message",
nick, text)}, C{("join", nick, room)}, C{("error", text)} ...), through a
L{User} that each front end provides with L{ChatBehaviour.connect}; the
back end comes from L{ChatBehaviour.newServer}.  The users here are
L{LineUser} (nc), L{BrowserUser} (the page's WebSocket), L{IrcUser} (an
IRC client) and L{SessionUser} (no front end at all).  A new front end
adds a L{User} that decodes its wire into those tuples, and one
L{twisted.trial.unittest.TestCase} subclass::

    class MyFrontEndTests(ChatBehaviour, TestCase):
        def connect(self) -> User:
            return MyUser(...)

A new back end overrides L{ChatBehaviour.newServer} (and L{turn}, if it
answers later than at once).
"""

import itertools
import re
from typing import Any, Dict, List, Sequence, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.words.protocols import irc
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ..chat import (
    ChatEvent,
    ChatServer,
    ChatSession,
    EventBatch,
    IChatClient,
    IChatRoom,
    IChatServer,
)
from . import ChatOnClock, connect

__all__ = [
    "BrowserUser",
    "ChatBehaviour",
    "IrcUser",
    "Late",
    "LateChatServer",
    "LineUser",
    "RecordingClient",
    "Seen",
    "SessionUser",
    "User",
    "event_seen",
]

Seen = Tuple[str, ...]


class User:
    """
    One user of the chat, as a behaviour test drives it.
    """

    @property
    def nick(self) -> str:
        """
        The user's nickname now.
        """
        raise NotImplementedError

    def send(self, text: str) -> None:
        """
        Type one line.
        """
        raise NotImplementedError

    def seen(self) -> List[Seen]:
        """
        What the user was shown since the last call, as tuples.
        """
        raise NotImplementedError

    def leave(self) -> None:
        """
        The connection goes away.
        """
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """
        Whether the chat ended the connection.
        """
        raise NotImplementedError


def event_seen(event: ChatEvent) -> Seen:
    """
    What a user sees of C{event}, as a tuple.
    """
    if event.kind in ("message", "action", "nick"):
        return (event.kind, event.nick, event.text)
    if event.kind == "notice":
        return ("message", event.nick, event.text)
    if event.kind == "join":
        return ("join", event.nick, event.room)
    if event.kind in ("leave", "quit"):
        return ("leave", event.nick, event.room, event.text)
    if event.kind in ("private", "private_notice"):
        return ("private", event.nick, event.target, event.text)
    return ("notice", event.text)


class ChatBehaviour:
    """
    What every chat front end on every back end does.  Mix into a
    L{TestCase} with L{connect} and L{newServer}.
    """

    clock: Clock
    server: Any

    def newServer(self, clock: Clock) -> IChatServer:
        """
        The back end under test.
        """
        return ChatServer("behaviour", clock)

    def connect(self) -> User:
        """
        A new user, through the front end under test.
        """
        raise NotImplementedError

    def setUp(self) -> None:
        self.clock = Clock()
        self.server = self.newServer(self.clock)

    @inlineCallbacks
    def users(self, count: int) -> Any:
        """
        C{count} new users, each having seen its welcome.
        """
        users = []
        for _ in range(count):  # one at a time: guest1, guest2, ...
            users.append(self.connect())
            yield self.turn()
        for user in users:
            user.seen()
        return users

    @inlineCallbacks
    def named(self, *nicks: str) -> Any:
        """
        New users, one for each of C{nicks}, so named.
        """
        users = yield self.users(len(nicks))
        for user, nick in zip(users, nicks):
            user.send(f"/nick {nick}")
        yield self.turn()
        for user in users:
            user.seen()
        return users

    def turn(self) -> "Deferred[None]":
        """
        Let everything under way happen: the back end's answers, the
        room's batch.  The result fires once it has.
        """
        self.clock.advance(0)
        return succeed(None)

    def assertSeen(self, user: User, expected: Sequence[Seen]) -> None:
        self.assertEqual(user.seen(), list(expected))  # type: ignore[attr-defined]

    # --- the behaviour ----------------------------------------------------

    def test_the_server_implements_its_interface(self) -> None:
        verifyObject(IChatServer, self.server)

    @inlineCallbacks
    def test_a_newcomer_is_welcomed_with_a_nickname_and_joins_the_lobby(self) -> Any:
        [alice] = yield self.users(1)
        bob = self.connect()
        yield self.turn()
        seen = bob.seen()
        self.assertEqual(seen[0][0], "notice")  # type: ignore[attr-defined]
        self.assertIn("Welcome", seen[0][1])  # type: ignore[attr-defined]
        self.assertIn(bob.nick, seen[0][1])  # type: ignore[attr-defined]
        self.assertIn(("join", bob.nick, "lobby"), seen)  # type: ignore[attr-defined]
        self.assertSeen(alice, [("join", bob.nick, "lobby")])

    @inlineCallbacks
    def test_a_line_reaches_everyone_in_the_room_sender_included(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("hello")
        yield self.turn()
        for user in (alice, bob):
            self.assertSeen(user, [("message", "alice", "hello")])

    @inlineCallbacks
    def test_an_action_reaches_everyone(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/me waves")
        yield self.turn()
        self.assertSeen(bob, [("action", "alice", "waves")])

    @inlineCallbacks
    def test_a_new_nickname_is_announced(self) -> Any:
        alice, bob = yield self.users(2)
        first = alice.nick
        alice.send("/nick alice")
        yield self.turn()
        self.assertSeen(bob, [("nick", first, "alice")])
        self.assertEqual(alice.nick, "alice")  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_a_nickname_in_use_or_looking_like_one_is_refused(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        for nick in ("alice", "ALICE", "aIice"):
            bob.send(f"/nick {nick}")
            yield self.turn()
            [(kind, text)] = bob.seen()
            self.assertEqual(kind, "error")  # type: ignore[attr-defined]
            self.assertIn("is taken", text)  # type: ignore[attr-defined]
        self.assertSeen(alice, [])

    @inlineCallbacks
    def test_an_invalid_nickname_is_refused(self) -> Any:
        [alice] = yield self.users(1)
        alice.send("/nick 9lives")
        yield self.turn()
        [(kind, text)] = alice.seen()
        self.assertEqual(kind, "error")  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_a_private_message_reaches_only_its_recipient_and_sender(self) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        alice.send("/msg BOB psst")
        yield self.turn()
        for user in (alice, bob):
            self.assertSeen(user, [("private", "alice", "bob", "psst")])
        self.assertSeen(carol, [])

    @inlineCallbacks
    def test_a_private_message_to_nobody_is_an_error(self) -> Any:
        [alice] = yield self.named("alice")
        alice.send("/msg nobody hi")
        yield self.turn()
        self.assertSeen(alice, [("error", "no such nickname: nobody")])

    @inlineCallbacks
    def test_joining_a_room_leaves_the_old_one(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/join games")
        yield self.turn()
        self.assertSeen(bob, [("leave", "alice", "lobby", "joined #games")])
        self.assertIn(("join", "alice", "games"), alice.seen())  # type: ignore
        alice.send("in games")
        yield self.turn()
        self.assertSeen(bob, [])
        alice.send("/part")
        yield self.turn()
        self.assertSeen(bob, [("join", "alice", "lobby")])

    @inlineCallbacks
    def test_a_newcomer_sees_the_recent_history(self) -> Any:
        [alice] = yield self.named("alice")
        alice.send("one")
        alice.send("two")
        yield self.turn()
        bob = self.connect()
        yield self.turn()
        seen = bob.seen()
        history = [s for s in seen if s[0] == "message"]
        self.assertEqual(  # type: ignore[attr-defined]
            history, [("message", "alice", "one"), ("message", "alice", "two")]
        )

    @inlineCallbacks
    def test_who_lists_the_room(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/who")
        yield self.turn()
        [(kind, text)] = alice.seen()
        self.assertEqual(kind, "notice")  # type: ignore[attr-defined]
        self.assertIn("alice, bob", text)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_a_user_who_goes_is_announced_and_frees_the_nickname(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.leave()
        yield self.turn()
        self.assertSeen(bob, [("leave", "alice", "lobby", "connection lost")])
        bob.send("/nick alice")
        yield self.turn()
        self.assertSeen(bob, [("nick", "bob", "alice")])

    @inlineCallbacks
    def test_quit_tells_the_room_the_reason_and_closes(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/quit lunch")
        yield self.turn()
        self.assertTrue(alice.closed)  # type: ignore[attr-defined]
        alice.leave()
        yield self.turn()
        self.assertSeen(bob, [("leave", "alice", "lobby", "lunch")])

    @inlineCallbacks
    def test_an_unknown_command_is_an_error_and_the_user_stays(self) -> Any:
        [alice] = yield self.named("alice")
        alice.send("/frob")
        alice.send("still here")
        yield self.turn()
        self.assertSeen(
            alice,
            [
                ("error", "unknown command /frob (try /help)"),
                ("message", "alice", "still here"),
            ],
        )

    @inlineCallbacks
    def test_rooms_lists_rooms_and_an_emptied_room_is_forgotten(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/join games")
        yield self.turn()
        alice.seen(), bob.seen()
        bob.send("/rooms")
        yield self.turn()
        [(_, text)] = bob.seen()
        self.assertIn("#games (1)", text)  # type: ignore[attr-defined]
        alice.send("/part")
        yield self.turn()
        bob.seen()
        bob.send("/rooms")
        yield self.turn()
        [(_, text)] = bob.seen()
        self.assertNotIn("#games", text)  # type: ignore[attr-defined]


# --- the line front end (telnet, nc, sockproto chat) -----------------------


NOTICE_FORMS = [
    (re.compile(r"-!- error: (.*)\Z"), "error"),
    (re.compile(r"-!- (\S+) joined #(\S+)\Z"), "join"),
    (re.compile(r"-!- (\S+) left #(\S+) \((.*)\)\Z"), "leave"),
    (re.compile(r"-!- (\S+) is now known as (\S+)\Z"), "nick"),
    (re.compile(r"-!- (.*)\Z"), "notice"),
    (re.compile(r"<(\S+)> (.*)\Z"), "message"),
    (re.compile(r"\*(\S+)\* -> \*(\S+)\* (.*)\Z"), "private"),
    (re.compile(r"\* (\S+) (.*)\Z"), "action"),
]


def parse_line(line: str) -> Seen:
    """
    A line of the line protocol, as a tuple.
    """
    for pattern, kind in NOTICE_FORMS:
        match = pattern.match(line)
        if match:
            return (kind, *match.groups())
    raise AssertionError(f"a line no user should see: {line!r}")


class LineUser(User):
    """
    A user of nc or telnet: lines in, lines out.
    """

    def __init__(self, chat: ChatOnClock) -> None:
        self.protocol, self.transport = chat.join()

    @property
    def nick(self) -> str:
        return str(self.protocol.nick)

    def send(self, text: str) -> None:
        self.protocol.dataReceived(text.encode("utf-8") + b"\n")

    def seen(self) -> List[Seen]:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        lines = data.split("\r\n")[:-1]
        return [
            parse_line(line)
            for line in lines
            if not line.startswith("-!- last ")  # the history's header
        ]

    def leave(self) -> None:
        self.protocol.connectionLost()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def message_seen(message: Dict[str, Any]) -> List[Seen]:
    """
    A JSON message of the WebSocket, as tuples (a history, several).
    """
    kind = message["type"]
    if kind == "history":
        return [message_seen(dict(e, ts=0))[0] for e in message["events"]]
    if kind in ("notice", "error"):
        return [(kind, message["text"])]
    if kind in ("you", "who", "rooms"):
        return []  # the page's state, shown otherwise by lines and notices
    return [
        event_seen(
            ChatEvent(
                kind,
                message["room"],
                message["nick"],
                message["text"],
                message.get("target", ""),
            )
        )
    ]


class BrowserUser(User):
    """
    A user of the web page: JSON over the WebSocket.
    """

    def __init__(self, chat: ChatOnClock) -> None:
        self.client, self.protocol, self.pump = chat.browser()
        self._read = 0

    @property
    def nick(self) -> str:
        return str(self.protocol.nick)

    def send(self, text: str) -> None:
        self.client.say(text)
        self.pump.flush()

    def seen(self) -> List[Seen]:
        self.pump.flush()
        messages = self.client.messages[self._read :]
        self._read = len(self.client.messages)
        return [seen for message in messages for seen in message_seen(message)]

    def leave(self) -> None:
        self.client.transport.loseConnection()
        self.pump.flush()

    @property
    def closed(self) -> bool:
        return bool(self.protocol.transport.disconnecting)


@implementer(IChatClient)
class RecordingClient:
    """
    The smallest front end: it records what the session shows.
    """

    def __init__(self) -> None:
        self.session: Any = None
        self.shown: List[Seen] = []
        self.closed = False

    @property
    def nick(self) -> str:
        return self.session.nick  # type: ignore[no-any-return]

    def deliver(self, batch: EventBatch) -> None:
        if not self.closed:
            self.shown += [event_seen(event) for event in batch.events]

    def receive(self, event: ChatEvent) -> None:
        self.shown.append(event_seen(event))

    def notice(self, text: str) -> None:
        self.shown.append(("notice", text))

    def error(self, text: str) -> None:
        self.shown.append(("error", text))

    def nickChanged(self, nick: str, reason: str) -> None:
        self.session.nick = nick
        self.shown.append(("notice", f"you are now known as {nick}: {reason}"))

    def history(self, room: str, events: Sequence[ChatEvent]) -> None:
        self.shown += [event_seen(event) for event in events]

    def close(self) -> None:
        self.closed = True


class SessionUser(User):
    """
    A session with no front end at all, on C{server}.
    """

    @property
    def nick(self) -> str:
        return self.session.nick

    def __init__(self, server: IChatServer) -> None:
        self.client = RecordingClient()
        self.session = self.client.session = ChatSession(self.client, server)
        self.session.start()

    def send(self, text: str) -> None:
        self.session.textReceived(text)

    def seen(self) -> List[Seen]:
        shown, self.client.shown = self.client.shown, []
        return shown

    def leave(self) -> None:
        self.client.closed = True
        self.session.end()

    @property
    def closed(self) -> bool:
        return self.client.closed


# --- a back end that answers late -------------------------------------------


class Late:
    """
    Wraps a back end object: every method returning a Deferred answers one
    clock tick later, as a back end over the network does.  A fake of the
    interface, not of any server.
    """

    def __init__(self, wrapped: Any, clock: Clock, delay: float = 0.01) -> None:
        self._wrapped = wrapped
        self._clock = clock
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._wrapped, name)
        if not callable(value) or name.startswith("_"):
            return value

        def late(*args: Any) -> Any:
            result = value(*args)
            if not isinstance(result, Deferred):
                return result
            d: Deferred[Any] = Deferred()
            result.addBoth(self._later, d)
            return d

        return late

    def _later(self, result: Any, d: "Deferred[Any]") -> None:
        if IChatRoom.providedBy(result):
            result = Late(result, self._clock, self._delay)
        self._clock.callLater(self._delay, d.callback, result)


@implementer(IChatServer)
class LateChatServer(Late):
    """
    The in-process back end, answering every request one tick late.
    """


# --- an IRC client ----------------------------------------------------------


class IrcUser(User):
    """
    An IRC client, as a person uses one: it registers (with C{echo-message},
    so that it shows its own lines as the server took them), joins
    C{#lobby} as clients with an auto-join do, and turns what the suite
    types into IRC: C{/join ROOM} (move to ROOM) is C{PART} then C{JOIN},
    C{/msg} is C{PRIVMSG NICK}, C{/quit} is C{QUIT}, and the chat's other
    commands go to the server's nickname (C{PRIVMSG sockproto :who}).
    What it sees is decoded from IRC back into the suite's tuples.
    """

    _numbers = itertools.count(1)

    def __init__(self, chat: ChatOnClock) -> None:
        self.chat = chat
        port = 50000 + next(self._numbers)
        self.protocol, self.transport = connect(
            chat.irc(), IPv4Address("TCP", "127.0.0.1", port)
        )
        self.room = "lobby"
        self.transport.clear()
        wanted = f"irc{port}"
        self.raw(
            "CAP LS 302",
            "CAP REQ :echo-message",
            f"NICK {wanted}",
            f"USER {wanted} 0 * :{wanted}",
            "CAP END",
            "JOIN #lobby",
        )

    @property
    def nick(self) -> str:
        return str(self.protocol.nick)

    def raw(self, *lines: str) -> None:
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")

    def send(self, text: str) -> None:
        if not text.startswith("/") or text.startswith("//"):
            body = text[1:] if text.startswith("//") else text
            return self.raw(f"PRIVMSG #{self.room} :{body}")
        name, _, argument = text[1:].partition(" ")
        name = name.lower()
        if name == "nick":
            self.raw(f"NICK {argument}")
        elif name == "me":
            self.raw(f"PRIVMSG #{self.room} :\x01ACTION {argument}\x01")
        elif name == "msg":
            nick, _, said = argument.partition(" ")
            self.raw(f"PRIVMSG {nick} :{said}")
        elif name == "join":
            room = argument.lstrip("#").lower()
            self.raw(f"PART #{self.room} :joined #{room}", f"JOIN #{room}")
            self.room = room
        elif name == "part":
            self.raw(f"PART #{self.room} :back to #lobby", "JOIN #lobby")
            self.room = "lobby"
        elif name == "quit":
            self.raw(f"QUIT :{argument}" if argument else "QUIT")
        else:
            self.raw(f"PRIVMSG sockproto :{text[1:]}")

    def seen(self) -> List[Seen]:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        shown: List[Seen] = []
        for line in data.split("\r\n"):
            if line:
                shown += self.decode(line)
        return shown

    def decode(self, line: str) -> List[Seen]:
        """
        One IRC message from the server, as what its user sees.
        """
        prefix, command, params = irc.parsemsg(line)
        who = prefix.split("!", 1)[0]
        if command == "001":
            return [("notice", params[-1])]
        if command == "401":
            return [("error", f"no such nickname: {params[1]}")]
        if command == "432":
            return [("error", f"invalid nickname {params[1]}: {params[-1]}")]
        if command == "433":
            return [("error", f"nickname {params[1]} is taken")]
        if command in ("JOIN",):
            return [("join", who, params[0].lstrip("#"))]
        if command == "PART":
            reason = params[1] if len(params) > 1 else ""
            return [("leave", who, params[0].lstrip("#"), reason)]
        if command == "QUIT":  # once, for the room this user is in
            reason = params[0] if params else ""
            if reason.startswith("Quit: "):
                reason = reason[len("Quit: ") :]
            return [("leave", who, self.room, reason)]
        if command == "NICK":
            return [("nick", who, params[0])]
        if command == "PRIVMSG":
            return [self.said(who, params[0], params[1])]
        if command == "NOTICE":
            return self.noticed(params[0], params[1])
        return []  # the other numerics, PING, ERROR: no line of the chat's

    @staticmethod
    def said(who: str, target: str, text: str) -> Seen:
        action = text.startswith("\x01ACTION ") and text.endswith("\x01")
        if target.startswith("#"):
            if action:
                return ("action", who, text[len("\x01ACTION ") : -1])
            return ("message", who, text)
        return ("private", who, target, text)

    def noticed(self, target: str, text: str) -> List[Seen]:
        if target.startswith("#"):  # a room's history, on joining it
            match = re.match(r"<(\S+)> (.*)\Z", text)
            if match:
                return [("message", *match.groups())]
            match = re.match(r"\* (\S+) (.*)\Z", text)
            if match:
                return [("action", *match.groups())]
            return []  # "last N lines of #room:"
        if text.startswith("error: "):
            return [("error", text[len("error: ") :])]
        return [("notice", text)]

    def leave(self) -> None:
        self.protocol.connectionLost()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)
