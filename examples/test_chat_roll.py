"""
Tests written for trial (they run under pytest too): trial examples
"""

import os
import random
import re
from pathlib import Path
from typing import Any

from chat_roll import DiceChatFactory, DiceChatSession
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sockproto.chat import ChatServer
from sockproto.testing import (
    TwistdProcess,
    connect,
    connect_line_client,
    listen_on_loopback,
    twistd_command,
)


class RollTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = DiceChatFactory(ChatServer("dice", self.clock), clock=self.clock)
        self.patch(DiceChatSession, "random", random.Random(1))
        self.alice, self.a = connect(self.factory)
        self.clock.advance(0)
        self.a.clear()

    def test_roll_is_shown_to_the_room(self) -> None:
        self.alice.dataReceived(b"/roll 3d6\n")
        self.clock.advance(0)
        line = self.a.value().decode()
        self.assertRegex(line, r"^\* guest1 rolls 3d6: \[\d, \d, \d\] = \d+\r\n$")

    def test_bad_roll_is_an_error(self) -> None:
        self.alice.dataReceived(b"/roll 0d6\n/roll lots\n")
        self.assertEqual(
            self.a.value(),
            b"-!- error: usage: /roll NdM, as in /roll 2d6\r\n" * 2,
        )

    def test_help_lists_roll(self) -> None:
        self.alice.dataReceived(b"/help\n")
        self.assertIn(b"/roll NdM", self.a.value())

    def test_readme_shows_this_example_as_it_is(self) -> None:
        root = Path(__file__).resolve().parent.parent
        readme = (root / "README.md").read_text()
        shown = re.search(
            r"<!-- example: examples/chat_roll.py -->\n```python\n(.*?)```",
            readme,
            re.S,
        )
        assert shown is not None
        self.assertEqual(
            shown.group(1), (root / "examples" / "chat_roll.py").read_text()
        )


class RollOverSocketTests(TestCase):
    @inlineCallbacks
    def test_roll_over_loopback(self) -> Any:
        server = yield listen_on_loopback(DiceChatFactory(rateLimit=0))
        self.addCleanup(server.stop)
        client = yield connect_line_client(server.endpoint())
        client.send("/roll 2d6")
        line = yield client.expect("rolls 2d6")
        self.assertRegex(line, r"= \d+$")
        client.transport.loseConnection()
        yield client.closed


class RollOnEveryFrontEndTests(TestCase):
    """
    The session subclass reaches every front end of the chat: nc, the
    page and IRC users all have /roll (IRC's way: PRIVMSG sockproto).
    """

    timeout = 30

    @inlineCallbacks
    def test_roll_from_nc_the_page_and_irc(self) -> Any:
        from sockproto.chat.frontends.irc import IrcChatFactory
        from sockproto.chat.frontends.web import WebChatFactory
        from sockproto.testing import connect_websocket

        lines = DiceChatFactory(rateLimit=0)
        servers = []
        for factory in (lines, WebChatFactory(lines.chat), IrcChatFactory(lines.chat)):
            server = yield listen_on_loopback(factory)
            self.addCleanup(server.stop)
            servers.append(server)
        nc = yield connect_line_client(servers[0].endpoint())
        page = yield connect_websocket(servers[1].endpoint())
        irc = yield connect_line_client(servers[2].endpoint())
        irc.send("NICK dicer")
        irc.send("USER dicer 0 * :dicer")
        irc.send("JOIN #lobby")
        yield irc.expect(" 366 ")

        nc.send("/roll 1d6")
        yield nc.expect("rolls 1d6")
        page.say("/roll 2d6")
        said = yield page.expect(lambda m: "rolls 2d6" in m.get("text", ""))
        self.assertEqual(said["type"], "action")
        yield irc.expect("PRIVMSG #lobby :\x01ACTION rolls 2d6")
        irc.send("PRIVMSG sockproto :roll 3d6")
        line = yield nc.expect("* dicer rolls 3d6")
        self.assertRegex(line, r"= \d+$")
        yield page.expect(lambda m: "rolls 3d6" in m.get("text", ""))
        self.assertNotIn("unknown command", " ".join(irc.lines))
        for client in (nc, irc):
            client.transport.loseConnection()
            yield client.closed
        page.transport.loseConnection()
        yield page.closed


class DiceTacTests(TestCase):
    timeout = 60

    def test_readme_shows_the_tac_as_it_is(self) -> None:
        root = Path(__file__).resolve().parent.parent
        readme = (root / "README.md").read_text()
        shown = re.search(
            r"<!-- example: examples/dice.tac -->\n```python\n(.*?)```", readme, re.S
        )
        assert shown is not None
        self.assertEqual(shown.group(1), (root / "examples" / "dice.tac").read_text())

    @inlineCallbacks
    def test_tac_stops_gracefully_on_sigterm(self) -> Any:
        here = Path(__file__).resolve().parent
        process = TwistdProcess(["chat"])
        command = twistd_command() + ["-n", "--pidfile=", "-y", str(here / "dice.tac")]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
            DICE_LISTEN="tcp:0:interface=127.0.0.1",
            PYTHONUNBUFFERED="1",
        )
        reactor.spawnProcess(process, command[0], command, env=env, path=str(here))
        yield process.ready.addTimeout(30, reactor)
        client = yield connect_line_client(
            TCP4ClientEndpoint(reactor, *process.address("chat"))
        )
        client.send("/roll 2d6")
        yield client.expect("rolls 2d6")
        process.stop("TERM")
        yield client.expect("-!- server shutting down")
        yield client.closed
        yield process.ended
        self.assertNotIn(b"Traceback", process.output + process.errors)
