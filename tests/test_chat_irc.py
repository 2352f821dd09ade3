"""
The chat's IRC front end: registration, commands and numerics in memory on
a Clock, beside line clients in the same rooms; and an IRC bot written with
the C{irc} library from PyPI over real loopback sockets.
"""

import os
import queue
import shutil
import subprocess
import sys
import threading
from typing import Any, List, Tuple

from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.usage import UsageError
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from sockproto.chat.backends.memory import ChatServer
from sockproto.chat.frontends.irc.protocol import (
    IrcChatFactory,
    IrcChatProtocol,
    irc_line,
)
from sockproto.chat.frontends.irc.render import split_text
from sockproto.chat.options import ChatOptions
from sockproto.testing import (
    ChatOnClock,
    connect_line_client,
    start_twistd,
    temporary_directory,
    wait_for,
)
from sockproto.testing.behaviour import LateChatServer

from .support import IrcClient, nc_and_ircd

LOCAL = "tcp:0:interface=127.0.0.1"

# What irssi 1.4.3 (Debian 12) sent on connecting, captured: "JOIN :"
# before registering tells it whether the server speaks CAP (451 if so);
# the rest follows the server's answer to CAP LS.
IRSSI = b"CAP LS 302\r\nJOIN :\r\n"
IRSSI_AFTER_CAP = b"CAP END\r\nNICK alice\r\nUSER root root 127.0.0.1 :root\r\n"
# WeeChat's order, from its documentation: CAP LS 302, NICK, USER, then CAP
# END once the capabilities are listed.
WEECHAT = b"CAP LS 302\r\nNICK bob\r\nUSER bob 0 * :bob\r\n"


OFFERED = "batch cap-notify echo-message multi-prefix server-time userhost-in-names"
OFFERED_WITH_SASL = (
    "account-tag batch cap-notify echo-message multi-prefix sasl=PLAIN server-time"
    " userhost-in-names"
)
OFFERED_SASL_NO_VALUE = (
    "account-tag batch cap-notify echo-message multi-prefix sasl server-time"
    " userhost-in-names"
)


def codes(lines: List[str]) -> List[str]:
    return [line.split()[1] for line in lines]


class RegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = ChatOnClock()

    def test_irssi_registers_after_cap_end(self) -> None:
        client = IrcClient(self.chat, 1)
        client.send(IRSSI)
        self.assertEqual(
            client.lines(),
            [
                f":sockproto.local CAP * LS :{OFFERED}",
                ":sockproto.local 451 * :You have not registered",
            ],
        )
        client.send(IRSSI_AFTER_CAP)
        lines = client.lines()
        self.assertEqual(
            codes(lines),
            ["001", "002", "003", "004", "005", "251", "254", "255", "422"],
        )
        self.assertTrue(lines[0].startswith(":sockproto.local 001 alice :Welcome"))
        self.assertIn("CHANTYPES=#", lines[4])
        self.assertIn("NICKLEN=16", lines[4])
        self.assertIn("CASEMAPPING=ascii", lines[4])

    def test_weechat_registers(self) -> None:
        client = IrcClient(self.chat, 1)
        client.send(WEECHAT + b"CAP END\r\n")
        self.assertIn("001", codes(client.lines()))

    def test_commands_before_registering_get_451(self) -> None:
        client = IrcClient(self.chat, 1)
        client.send(b"JOIN #lobby\r\n")
        self.assertEqual(
            client.lines(), [":sockproto.local 451 * :You have not registered"]
        )

    def test_a_nick_in_use_gets_433_and_another_can_follow(self) -> None:
        IrcClient(self.chat, 1).register("alice")
        second = IrcClient(self.chat, 2)
        self.assertEqual(
            second.register("alice"),
            [":sockproto.local 433 * alice :Nickname is already in use"],
        )
        second.send(b"NICK alice_\r\n")
        self.assertIn("001", codes(second.lines()))

    def test_bad_nicks_and_missing_parameters(self) -> None:
        client = IrcClient(self.chat, 1)
        client.send(b"NICK 1abc\r\nNICK\r\nUSER x\r\n")
        self.assertEqual(codes(client.lines()), ["432", "431", "461"])

    def test_a_line_user_s_nick_is_in_use_for_irc_too(self) -> None:
        line, _ = self.chat.join()
        client = IrcClient(self.chat, 1)
        self.assertEqual(codes(client.register(line.nick)), ["433"])

    def test_a_registered_nick_needs_pass(self) -> None:
        from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

        checker = InMemoryUsernamePasswordDatabaseDontUse(carol=b"secret")
        self.chat = ChatOnClock(checker=checker)
        client = IrcClient(self.chat, 1)
        self.assertEqual(codes(client.register("carol")), ["433"])
        client = IrcClient(self.chat, 2)
        client.send(b"PASS secret\r\n")
        self.assertIn("001", codes(client.register("carol")))


class SaslTests(SynchronousTestCase):
    def setUp(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(carol=b"secret")
        self.chat = ChatOnClock(checker=checker)

    def authenticate(self, password: str) -> List[str]:
        import base64

        client = self.client = IrcClient(self.chat, 1)
        client.send(b"CAP LS 302\r\nNICK carol\r\nUSER c 0 * :c\r\n")
        self.assertEqual(
            client.lines(), [f":sockproto.local CAP * LS :{OFFERED_WITH_SASL}"]
        )
        client.send(b"CAP REQ :sasl\r\nAUTHENTICATE PLAIN\r\n")
        self.assertEqual(
            client.lines(), [":sockproto.local CAP * ACK :sasl", "AUTHENTICATE +"]
        )
        token = base64.b64encode(f"\0carol\0{password}".encode()).decode()
        client.send(f"AUTHENTICATE {token}\r\n".encode())
        return client.lines()

    def test_sasl_plain_logs_in_to_a_registered_nick(self) -> None:
        self.assertEqual(codes(self.authenticate("secret")), ["900", "903"])
        self.client.send(b"CAP END\r\n")
        lines = self.client.lines()
        self.assertTrue(lines[0].startswith(":sockproto.local 001 carol "), lines)

    def test_a_wrong_sasl_password_fails_and_counts(self) -> None:
        self.assertEqual(codes(self.authenticate("guess")), ["904"])
        self.assertEqual(self.chat.factory.accounts.wrongPasswords, 1)
        self.client.send(b"CAP END\r\n")
        self.assertEqual(codes(self.client.lines()), ["433"])

    def chunked(self, password: str) -> List[str]:
        import base64

        checker = InMemoryUsernamePasswordDatabaseDontUse(dave=password.encode())
        client = IrcClient(ChatOnClock(checker=checker), 1)
        client.send(b"CAP REQ :sasl\r\nAUTHENTICATE PLAIN\r\n")
        token = base64.b64encode(f"\0dave\0{password}".encode()).decode()
        pieces = [token[i : i + 400] for i in range(0, len(token), 400)]
        if len(pieces[-1]) == 400:
            pieces.append("+")
        for piece in pieces:
            client.send(f"AUTHENTICATE {piece}\r\n".encode())
        self.assertEqual(len(pieces), 2)
        return codes(client.lines())

    def test_a_payload_in_400_byte_pieces_is_put_together(self) -> None:
        self.assertEqual(self.chunked("p" * 350)[-2:], ["900", "903"])  # 400 + 84

    def test_a_payload_of_exactly_400_bytes_ends_with_a_plus(self) -> None:
        self.assertEqual(self.chunked("p" * 293)[-2:], ["900", "903"])  # 400, "+"

    def test_once_authenticated_or_registered_no_more_sasl(self) -> None:
        self.authenticate("secret")
        self.client.send(b"AUTHENTICATE PLAIN\r\n")
        self.assertEqual(codes(self.client.lines()), ["907"])
        other = IrcClient(self.chat, 2)
        other.send(b"CAP REQ :sasl\r\nCAP END\r\n")
        other.register("erin")
        other.send(b"AUTHENTICATE PLAIN\r\n")
        self.assertEqual(codes(other.lines()), ["462"])

    def test_other_mechanisms_and_overlong_payloads(self) -> None:
        client = IrcClient(self.chat, 3)
        client.send(b"CAP REQ :sasl\r\nAUTHENTICATE EXTERNAL\r\n")
        self.assertEqual(codes(client.lines()[1:]), ["908", "904"])
        client.send(b"AUTHENTICATE PLAIN\r\n")
        client.lines()
        for _ in range(4):
            client.send(b"AUTHENTICATE " + b"A" * 400 + b"\r\n")
        client.send(b"AUTHENTICATE AAAA\r\n")
        self.assertEqual(codes(client.lines()), ["905"])

    def test_no_sasl_without_accounts(self) -> None:
        client = IrcClient(ChatOnClock(), 1)
        client.send(b"CAP LS 302\r\nCAP REQ :sasl\r\nAUTHENTICATE PLAIN\r\n")
        self.assertEqual(
            client.lines(),
            [
                f":sockproto.local CAP * LS :{OFFERED}",
                ":sockproto.local CAP * NAK :sasl",
                ":sockproto.local 904 * :SASL authentication failed",
            ],
        )


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.alice = IrcClient(self.chat, 1)
        self.alice.register("alice")
        self.line, self.lineIO = self.chat.join()
        self.chat.send(self.line, "/nick bob")
        self.lineIO.clear()

    def joined(self) -> List[str]:
        self.alice.send(b"JOIN #lobby\r\n")
        return self.alice.lines()

    def test_join_shows_the_join_topic_and_names(self) -> None:
        lines = self.joined()
        self.assertEqual(lines[0], ":alice!alice@sockproto JOIN #lobby")
        self.assertEqual(codes(lines[1:]), ["353", "366"])
        self.assertEqual(lines[1], ":sockproto.local 353 alice = #lobby :bob alice")
        self.assertIn("-!- alice joined #lobby", self.lineIO.value().decode())

    def test_several_rooms_at_once(self) -> None:
        self.alice.send(b"JOIN #lobby,#dev\r\n")
        lines = self.alice.lines()
        self.assertIn(":alice!alice@sockproto JOIN #dev", lines)
        self.chat.send(self.line, "/join #dev", "in dev")
        self.assertIn(":bob!bob@sockproto PRIVMSG #dev :in dev", self.alice.lines())
        self.alice.send(b"PRIVMSG #lobby :still in the lobby too\r\n")
        self.assertNotIn("still in the lobby", self.lineIO.value().decode())
        self.alice.send(b"PRIVMSG #dev :and here\r\n")
        self.assertIn("<alice> and here", self.lineIO.value().decode())

    def test_privmsg_both_ways_with_no_echo(self) -> None:
        self.joined()
        self.alice.send(b"PRIVMSG #lobby :hello nc\r\n")
        self.assertIn("<alice> hello nc", self.lineIO.value().decode())
        self.assertEqual(self.alice.lines(), [])  # IRC clients show their own
        self.chat.send(self.line, "hello irc")
        self.assertEqual(
            self.alice.lines(), [":bob!bob@sockproto PRIVMSG #lobby :hello irc"]
        )

    def test_ctcp_action_is_me(self) -> None:
        self.joined()
        self.alice.send(b"PRIVMSG #lobby :\x01ACTION waves\x01\r\n")
        self.assertIn("* alice waves", self.lineIO.value().decode())
        self.chat.send(self.line, "/me nods")
        self.assertEqual(
            self.alice.lines(),
            [":bob!bob@sockproto PRIVMSG #lobby :\x01ACTION nods\x01"],
        )

    def test_private_messages_to_and_from_a_nick(self) -> None:
        self.alice.send(b"PRIVMSG bob :psst\r\n")
        self.assertIn("*alice* -> *bob* psst", self.lineIO.value().decode())
        self.chat.send(self.line, "/msg alice hi")
        self.assertEqual(self.alice.lines(), [":bob!bob@sockproto PRIVMSG alice :hi"])
        self.alice.send(b"PRIVMSG nobody :hello?\r\n")
        self.assertEqual(codes(self.alice.lines()), ["401"])

    def test_part_and_quit_reach_the_room(self) -> None:
        self.joined()
        self.alice.send(b"PART #lobby :later\r\n")
        self.assertEqual(
            self.alice.lines(), [":alice!alice@sockproto PART #lobby :later"]
        )
        self.assertIn("alice left #lobby (later)", self.lineIO.value().decode())
        self.joined()
        self.alice.send(b"QUIT :bye now\r\n")
        self.assertEqual(self.alice.lines(), ["ERROR :Closing link: quit"])
        self.assertTrue(self.alice.transport.disconnecting)
        self.alice.protocol.connectionLost()  # as the transport does, once closed
        self.chat.clock.advance(0)
        self.assertIn("alice left #lobby (Quit: bye now)", self.lineIO.value().decode())

    def test_nick_change_is_seen_once_even_in_two_rooms(self) -> None:
        self.alice.send(b"JOIN #lobby,#dev\r\n")
        self.chat.send(self.line, "/join #dev")
        self.alice.lines()
        self.chat.send(self.line, "/nick robert")
        self.assertEqual(self.alice.lines(), [":bob!bob@sockproto NICK robert"])
        self.alice.send(b"NICK alicia\r\n")
        self.assertEqual(self.alice.lines(), [":alice!alice@sockproto NICK alicia"])
        self.assertIn("alice is now known as alicia", self.lineIO.value().decode())

    def test_each_client_sees_a_nick_change_whatever_the_others_saw(self) -> None:
        xavier, carol, dave = (IrcClient(self.chat, port) for port in (30, 31, 32))
        xavier.register("xavier")
        xavier.send(b"JOIN #lobby,#dev\r\n")
        self.alice.send(b"JOIN #lobby,#dev\r\n")  # seen first in both rooms
        carol.register("carol")
        carol.send(b"JOIN #lobby\r\n")
        dave.register("dave")
        dave.send(b"JOIN #dev\r\n")
        for client in (self.alice, carol, dave):
            client.lines()
        xavier.send(b"NICK xavi\r\n")  # in #lobby and in #dev
        for client in (self.alice, carol, dave):
            self.assertEqual(client.lines(), [":xavier!xavier@sockproto NICK xavi"])

    def test_a_batch_all_members_spoke_in_is_formatted_once(self) -> None:
        clients = [IrcClient(self.chat, port) for port in range(2, 22)]
        for number, client in enumerate(clients):
            client.register(f"irc{number}")
            client.send(b"JOIN #lobby\r\n")
        for client in clients:
            client.lines()
        formatted = []
        format = IrcChatProtocol.formatIrc

        def counted(protocol: IrcChatProtocol, *args: Any) -> str:
            formatted.append(args)
            return format(protocol, *args)

        self.patch(IrcChatProtocol, "formatIrc", counted)
        for number, client in enumerate(clients):  # in one reactor turn
            client.protocol.dataReceived(f"PRIVMSG #lobby :from {number}\r\n".encode())
        self.chat.clock.advance(0)
        for number, client in enumerate(clients):
            said = [line.rpartition(":")[2] for line in client.lines()]
            others = [f"from {n}" for n in range(len(clients)) if n != number]
            self.assertEqual(said, others)
        # Each of the 20 lines once, not once for each of the 20 senders.
        self.assertEqual(len(formatted), len(clients))

    def test_a_nick_change_out_of_any_room_is_told(self) -> None:
        self.alice.send(b"NICK alicia\r\n")
        self.assertEqual(self.alice.lines(), [":alice!alice@sockproto NICK alicia"])

    def test_names_who_list_topic_mode(self) -> None:
        self.joined()
        self.alice.send(b"NAMES #lobby\r\nWHO #lobby\r\nLIST\r\nTOPIC #lobby\r\n")
        lines = self.alice.lines()
        self.assertEqual(
            codes(lines),
            ["353", "366", "352", "352", "315", "321", "322", "323", "331"],
        )
        self.assertIn(":sockproto.local 322 alice #lobby 2 :", lines)
        self.alice.send(b"MODE #lobby\r\nMODE #lobby b\r\nMODE alice\r\n")
        self.assertEqual(codes(self.alice.lines()), ["324", "368", "221"])

    def test_ping_away_userhost_ison(self) -> None:
        self.alice.send(b"PING :abc\r\n")
        self.assertEqual(
            self.alice.lines(), [":sockproto.local PONG sockproto.local :abc"]
        )
        self.alice.send(b"AWAY :lunch\r\nAWAY\r\n")
        self.assertEqual(codes(self.alice.lines()), ["306", "305"])
        self.alice.send(b"USERHOST bob\r\nISON bob carol\r\n")
        self.assertEqual(
            self.alice.lines(),
            [
                ":sockproto.local 302 alice :bob=+bob@sockproto",
                ":sockproto.local 303 alice :bob",
            ],
        )

    def test_unknown_and_bad_input_get_numerics(self) -> None:
        self.alice.send(b"FROB x\r\nJOIN\r\nJOIN #no!pe\r\nPART #dev\r\n")
        self.assertEqual(codes(self.alice.lines()), ["421", "461", "403", "442"])
        self.alice.send(b"USER a 0 * :a\r\nPASS x\r\nNICK\r\nNICK 9\r\n")
        self.assertEqual(codes(self.alice.lines()), ["462", "462", "431", "432"])
        self.alice.send(b"PRIVMSG #dev :not joined\r\n\xff\xfe\r\n:\r\n")
        self.assertEqual(codes(self.alice.lines()), ["404", "421", "421"])
        logged: List[str] = []

        def observe(event: Any) -> None:
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.alice.send(b"x" * 600 + b"\r\n")
        self.assertEqual(codes(self.alice.lines()), ["417"])
        self.assertFalse(self.alice.transport.disconnecting)
        self.assertIn(
            "irc: 127.0.0.1:1 sent a line of 601 bytes: dropped", logged
        )  # CR too

    def test_an_idle_client_is_pinged_then_dropped(self) -> None:
        clock = self.chat.clock
        clock.advance(IrcChatFactory.pingInterval)
        self.assertEqual(self.alice.lines(), ["PING sockproto.local"])
        self.alice.send(b"PONG sockproto\r\n")
        clock.advance(IrcChatFactory.pingInterval)
        self.assertEqual(self.alice.lines(), ["PING sockproto.local"])
        clock.advance(IrcChatFactory.pingInterval)
        self.assertEqual(self.alice.lines(), ["ERROR :Closing link: ping timeout"])
        self.assertTrue(self.alice.transport.disconnecting)

    def test_the_server_stopping_says_error(self) -> None:
        self.chat._irc.closeAll()  # type: ignore[attr-defined]
        self.assertEqual(
            self.alice.lines(), ["ERROR :Closing link: server shutting down"]
        )

    def test_server_commands_through_privmsg_to_the_server(self) -> None:
        self.joined()
        self.alice.send(b"PRIVMSG sockproto :rooms\r\n")
        self.assertEqual(
            self.alice.lines(), [":sockproto.local NOTICE alice :rooms (1): #lobby (2)"]
        )


class FormatTests(SynchronousTestCase):
    def test_the_trailing_parameter(self) -> None:
        self.assertEqual(
            irc_line("s", "PRIVMSG", "#a", "hi there"), ":s PRIVMSG #a :hi there"
        )
        self.assertEqual(irc_line(None, "PING", "s"), "PING s")
        self.assertEqual(irc_line("s", "CAP", "*", "LS", ""), ":s CAP * LS :")
        self.assertEqual(irc_line("s", "X", ":colon"), ":s X ::colon")
        self.assertEqual(irc_line("s", "JOIN", "#a"), ":s JOIN #a")


class IrcLibraryTests(TestCase):
    """
    A bot written with the C{irc} library from PyPI, not by us, in a
    thread of its own, and a line client, over real loopback sockets.
    """

    timeout = 60

    @inlineCallbacks
    def test_an_irc_bot_talks_with_an_nc_user(self) -> Any:
        try:
            import irc.client  # noqa: F401
        except ImportError:
            raise SkipTest(
                "the irc library is missing: pip install 'irc>=20' (the test"
                " extra installs it on Python 3.10 and later only)"
            ) from None
        ircd, nc = yield nc_and_ircd(self)
        bot = Bot(ircd.portNumber)
        thread = threading.Thread(target=bot.run, daemon=True)
        thread.start()
        self.addCleanup(bot.stop)
        yield nc.expect("ircbot joined #lobby")
        nc.send("hello bot")
        yield wait_for(lambda: ("ncuser", "#lobby", "hello bot") in bot.heard)
        yield nc.expect("<ircbot> hello ncuser")
        nc.send("/msg ircbot a secret")
        yield wait_for(lambda: ("ncuser", "ircbot", "a secret") in bot.heard)
        yield nc.expect("*ircbot* -> *ncuser* psst")
        bot.do(lambda c: c.nick("botty"))
        yield nc.expect("ircbot is now known as botty")
        self.assertEqual(bot.errors, [])
        bot.do(lambda c: c.quit("done"))
        yield nc.expect("botty left #lobby (Quit: done)")


class Bot:
    """
    An IRC bot on the irc library's own reactor (its thread): joins
    #lobby, answers "hello bot", and answers a private message privately.
    """

    def __init__(self, port: int) -> None:
        import irc.client

        self.reactor = irc.client.Reactor()
        self.connection = self.reactor.server().connect("127.0.0.1", port, "ircbot")
        self.heard: List[Tuple[str, str, str]] = []
        self.errors: List[str] = []
        self.running = True
        self.actions: queue.Queue[Any] = queue.Queue()
        for kind in ("welcome", "pubmsg", "privmsg", "error", "nicknameinuse"):
            self.connection.add_global_handler(kind, getattr(self, "on_" + kind))

    def run(self) -> None:
        while self.running:
            self.doActions()
            self.reactor.process_once(0.05)
        self.doActions()

    def doActions(self) -> None:
        while not self.actions.empty():
            self.actions.get()(self.connection)

    def do(self, action: Any) -> None:
        """
        Have the bot's thread do C{action} (the irc library is not
        thread-safe).
        """
        self.actions.put(action)

    def stop(self) -> None:
        self.do(lambda c: c.disconnect() if c.is_connected() else None)
        self.running = False

    def on_welcome(self, connection: Any, event: Any) -> None:
        connection.join("#lobby")

    def on_pubmsg(self, connection: Any, event: Any) -> None:
        self.heard.append((event.source.nick, event.target, event.arguments[0]))
        if event.arguments[0] == "hello bot":
            connection.privmsg("#lobby", f"hello {event.source.nick}")

    def on_privmsg(self, connection: Any, event: Any) -> None:
        self.heard.append((event.source.nick, event.target, event.arguments[0]))
        connection.privmsg(event.source.nick, "psst")

    def on_error(self, connection: Any, event: Any) -> None:
        self.errors.append(str(event.arguments))

    def on_nicknameinuse(self, connection: Any, event: Any) -> None:
        self.errors.append("nickname in use")


QUICK_IRSSI = """
settings = {
  "irc/core" = { cmd_queue_speed = "0msec"; max_cmds_at_once = "100"; };
};
"""


class IrssiTests(TestCase):
    """
    Debian's irssi, in tmux, against C{twistd -n sockproto chat --irc ...}
    as a user starts both, beside a line client.
    """

    timeout = 90

    def setUp(self) -> None:
        if not (shutil.which("irssi") and shutil.which("tmux")):
            raise SkipTest("needs irssi and tmux: apt-get install irssi tmux")
        self.directory = temporary_directory(self)
        self.session = f"sockproto-{os.getpid()}-{id(self)}"

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.session, *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session, "-S", "-200")

    def typed(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.session, text, "Enter")

    @inlineCallbacks
    def onScreen(self, text: str) -> Any:
        try:
            yield wait_for(lambda: text in self.screen(), timeout=20)
        except Exception:
            self.fail(f"{text!r} not on irssi's screen:\n{self.screen()}")

    @inlineCallbacks
    def test_irssi_joins_the_lobby_and_talks_with_nc(self) -> Any:
        args = ["chat", "--listen", LOCAL, "--irc", LOCAL]
        server = yield start_twistd(args, ["chat", "irc"], cwd=self.directory)
        self.addCleanup(lambda: None if server.ended.called else server.stop("KILL"))
        host, port = server.address("irc")
        nc = yield connect_line_client(
            TCP4ClientEndpoint(reactor, *server.address("chat"))
        )
        self.addCleanup(nc.transport.loseConnection)
        yield nc.expect("you are in #lobby")
        home = os.path.join(self.directory, "irssi")
        os.mkdir(home)
        with open(os.path.join(home, "config"), "w") as config:
            # irssi paces its commands (a burst of 5, then one every 2.2 s):
            # a test types faster than a person, so the pacing is off.
            config.write(QUICK_IRSSI)
        command = f"irssi --home={home} -n irssiuser -c {host} -p {port}"
        self.tmux(
            "new-session", "-d", "-s", self.session, "-x", "150", "-y", "40", command
        )
        self.addCleanup(self.tmux, "kill-server")
        yield self.onScreen("Welcome to sockproto chat")
        self.typed("/join #lobby")
        yield nc.expect("irssiuser joined #lobby")
        nc.send("hello irssi")
        yield self.onScreen("hello irssi")
        self.typed("hello nc, from irssi")
        yield nc.expect("<irssiuser> hello nc, from irssi")
        self.typed("/me waves")
        yield nc.expect("* irssiuser waves")
        channel = self.screen()
        self.typed("/window 1")  # the status window: the server's replies
        yield self.onScreen("No MOTD")
        status = self.screen().split("Welcome to sockproto chat", 1)[1]
        for bad in ("Unknown command", "parameters", "rror", "warning"):
            self.assertNotIn(bad, channel)
            self.assertNotIn(bad, status)
        self.typed("/quit bye")
        yield nc.expect("irssiuser left #lobby (Quit: bye)")


class PipelinedRegistrationTests(SynchronousTestCase):
    def test_lines_sent_while_registering_wait_for_it(self) -> None:
        from twisted.internet.defer import Deferred

        chat = ChatOnClock()
        pending: List[Deferred[str]] = []
        register = chat.server.register

        def slowly(member: Any) -> Any:  # as a back end over the network
            d: Deferred[str] = Deferred()
            pending.append(d)
            return d.addCallback(lambda _: register(member))

        chat.server.register = slowly  # type: ignore[method-assign]
        client = IrcClient(chat, 1)
        client.send(b"NICK alice\r\nUSER a 0 * :a\r\nJOIN #lobby\r\n")
        self.assertEqual(client.lines(), [])
        pending[0].callback("")
        chat.clock.advance(0)
        lines = client.lines()
        self.assertEqual(
            codes(lines)[:9],
            ["001", "002", "003", "004", "005", "251", "254", "255", "422"],
        )
        self.assertIn(":alice!alice@sockproto JOIN #lobby", lines)


class CapabilityTests(SynchronousTestCase):
    def setUp(self) -> None:
        from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

        checker = InMemoryUsernamePasswordDatabaseDontUse(carol=b"secret")
        self.chat = ChatOnClock(checker=checker)

    def test_cap_ls_without_302_has_no_values(self) -> None:
        client = IrcClient(self.chat, 1)
        client.send(b"CAP LS\r\n")
        self.assertEqual(
            client.lines(),
            [f":sockproto.local CAP * LS :{OFFERED_SASL_NO_VALUE}"],
        )

    def test_a_request_is_all_or_nothing(self) -> None:
        client = IrcClient(self.chat, 1)
        client.send(b"CAP LS 302\r\nCAP REQ :echo-message frobnicate\r\n")
        self.assertEqual(
            client.lines()[-1], ":sockproto.local CAP * NAK :echo-message frobnicate"
        )
        client.send(b"CAP REQ :echo-message\r\nCAP LIST\r\n")
        self.assertEqual(
            client.lines(),
            [
                ":sockproto.local CAP * ACK :echo-message",
                ":sockproto.local CAP * LIST :echo-message",
            ],
        )

    def test_echo_message_echoes_own_lines_actions_and_private_messages(self) -> None:
        alice = IrcClient(self.chat, 1)
        alice.send(b"CAP REQ :echo-message\r\n")
        alice.register("alice")
        alice.send(b"CAP END\r\nJOIN #lobby\r\n")
        line, _ = self.chat.join()
        self.chat.send(line, "/nick bob")
        alice.lines()
        alice.send(b"PRIVMSG #lobby :hi\r\nPRIVMSG #lobby :\x01ACTION waves\x01\r\n")
        alice.send(b"PRIVMSG BOB :psst\r\n")
        self.assertEqual(
            alice.lines(),
            [
                ":alice!alice@sockproto PRIVMSG #lobby :hi",
                ":alice!alice@sockproto PRIVMSG #lobby :\x01ACTION waves\x01",
                ":alice!alice@sockproto PRIVMSG bob :psst",
            ],
        )

    def test_without_echo_message_own_lines_are_not_echoed(self) -> None:
        alice = IrcClient(self.chat, 1)
        alice.register("alice")
        alice.send(b"JOIN #lobby\r\n")
        alice.lines()
        alice.send(b"PRIVMSG #lobby :hi\r\n")
        self.assertEqual(alice.lines(), [])


class AbuseTests(SynchronousTestCase):
    """
    What one IRC connection (or one address) may hold and try.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock(rateLimit=0)

    def test_a_connection_may_join_chanlimit_channels_then_gets_405(self) -> None:
        client = IrcClient(self.chat, 1)
        lines = client.register("hoarder")
        limit = IrcChatFactory.maxChannels
        self.assertIn(f"CHANLIMIT=#:{limit}", " ".join(lines))
        names = ",".join(f"#r{i}" for i in range(limit + 5))
        client.send(f"JOIN {names}\r\n".encode())
        lines = client.lines()
        joins = [line for line in lines if line.split()[1] == "JOIN"]
        refused = [line for line in lines if line.split()[1] == "405"]
        self.assertEqual((len(joins), len(refused)), (limit, 5))
        self.assertIn("#r20 :You have joined too many channels", refused[0])
        client.send(b"PART #r0\r\nJOIN #r20\r\n")
        self.assertIn("JOIN", " ".join(client.lines()))

    def test_one_address_cannot_hold_every_room(self) -> None:
        per_peer = IrcChatFactory.maxChannelsPerPeer
        joined = 0
        for n in range(per_peer // IrcChatFactory.maxChannels + 2):
            client = IrcClient(self.chat, 1)
            client.register(f"h{n}")
            names = ",".join(f"#c{n}x{i}" for i in range(IrcChatFactory.maxChannels))
            client.send(f"JOIN {names}\r\n".encode())
            joined += sum(1 for line in client.lines() if line.split()[1] == "JOIN")
        self.assertEqual(joined, per_peer)
        other = IrcClient(self.chat, 2, "127.0.0.2")  # another address is free
        other.register("other")
        other.send(b"JOIN #fresh\r\n")
        self.assertIn("JOIN", " ".join(other.lines()))

    def test_joining_rooms_others_made_is_not_limited_by_address(self) -> None:
        count = IrcChatFactory.maxChannelsPerPeer + 10
        for n in range(count):
            client = IrcClient(self.chat, 1)
            client.register(f"many{n}")
            client.send(b"JOIN #lobby,#shared\r\n")
            joins = [line for line in client.lines() if line.split()[1] == "JOIN"]
            self.assertEqual(len(joins), 2, n)
        self.assertEqual(sum(self.chat.factory.chat.roomsHeld.values()), 1)

    def test_quitting_gives_the_address_its_channels_back(self) -> None:
        client = IrcClient(self.chat, 1)
        client.register("q")
        client.send(b"JOIN #a,#b\r\n")
        self.assertEqual(sum(self.chat.factory.chat.roomsHeld.values()), 2)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        client.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.chat.factory.chat.roomsHeld, {})

    def test_the_server_s_name_and_look_alikes_cannot_be_taken(self) -> None:
        for nick in ["sockproto", "SockProto", "s0ckprot0", "sockpr0to"]:
            client = IrcClient(self.chat, 1)
            lines = client.register(nick)
            self.assertEqual(codes(lines), ["432"], (nick, lines))
        line, transport = self.chat.join()
        self.chat.send(line, "/nick sockproto")
        self.assertIn("the server's own", transport.value().decode())

    def test_an_unregistered_client_that_pings_is_still_closed(self) -> None:
        client = IrcClient(self.chat, 1)
        for _ in range(10):
            client.send(b"PING :keepalive\r\n")
            self.chat.clock.advance(IrcChatFactory.registrationTimeout / 10)
        lines = client.lines()
        self.assertIn("ERROR :Closing link: registration timed out", lines)
        self.assertTrue(client.transport.disconnecting)

    def test_registering_in_time_is_not_closed(self) -> None:
        client = IrcClient(self.chat, 1)
        client.register("ontime")
        self.chat.clock.advance(IrcChatFactory.registrationTimeout + 1)
        self.assertFalse(client.transport.disconnecting)

    def test_a_512_byte_line_is_read_and_513_bytes_get_417(self) -> None:
        client = IrcClient(self.chat, 1)
        client.register("long")
        client.send(b"JOIN #lobby\r\n")
        client.lines()
        for size, answer in [(512, "PONG"), (513, "417")]:
            padding = "x" * (size - len("PING :\r\n"))
            client.send(f"PING :{padding}\r\n".encode())
            self.assertEqual(client.lines()[0].split()[1], answer, size)


class SaslLimitTests(SynchronousTestCase):
    def test_three_wrong_sasl_passwords_disconnect(self) -> None:
        import base64

        from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

        checker = InMemoryUsernamePasswordDatabaseDontUse(carol=b"secret")
        chat = ChatOnClock(checker=checker)
        client = IrcClient(chat, 1)
        client.send(b"CAP LS 302\r\nCAP REQ :sasl\r\n")
        limit = chat.factory.accounts.maxWrongPerConnection
        for n in range(limit):
            self.assertFalse(client.transport.disconnecting, n)
            token = base64.b64encode(f"\0carol\0guess{n}".encode()).decode()
            client.send(f"AUTHENTICATE PLAIN\r\nAUTHENTICATE {token}\r\n".encode())
        lines = client.lines()
        self.assertEqual(codes(lines).count("904"), limit)
        self.assertEqual(lines[-1], "ERROR :Closing link: too many wrong passwords")
        self.assertTrue(client.transport.disconnecting)


class ConformanceTests(SynchronousTestCase):
    """
    What RFC 2812 and the modern IRC client protocol document say a
    server answers, where sockproto answered otherwise.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.alice = IrcClient(self.chat, 1)
        self.alice.register("alice")

    def test_myinfo_and_isupport_list_the_modes_there_are(self) -> None:
        lines = IrcClient(self.chat, 2).register("bob")
        [myinfo] = [line for line in lines if line.split()[1] == "004"]
        self.assertTrue(myinfo.endswith(" i :n"), myinfo)  # no empty parameter
        [isupport] = [line for line in lines if line.split()[1] == "005"]
        self.assertIn("CHANMODES=,,,n", isupport)

    def test_privmsg_without_recipient_or_text(self) -> None:
        self.alice.send(b"PRIVMSG\r\nPRIVMSG bob\r\nPRIVMSG bob :\r\n")
        self.assertEqual(codes(self.alice.lines()), ["411", "412", "412"])
        self.alice.send(b"NOTICE\r\nNOTICE bob :\r\n")  # never answered
        self.assertEqual(self.alice.lines(), [])

    def test_a_bare_ping_needs_a_parameter(self) -> None:
        self.alice.send(b"PING\r\n")
        self.assertEqual(
            self.alice.lines(),
            [":sockproto.local 461 alice PING :Not enough parameters"],
        )

    def test_topic_of_a_room_that_does_not_exist(self) -> None:
        self.alice.send(b"TOPIC #nosuchroom\r\nTOPIC #lobby\r\nTOPIC nochannel\r\n")
        self.assertEqual(codes(self.alice.lines()), ["403", "331", "403"])

    def test_a_channel_mode_change_is_refused_not_answered_as_a_query(self) -> None:
        self.alice.send(b"JOIN #lobby\r\n")
        self.alice.lines()
        self.alice.send(b"MODE #lobby +m\r\nMODE #lobby\r\nMODE #lobby e\r\n")
        lines = self.alice.lines()
        self.assertEqual(codes(lines), ["482", "324", "349"])
        self.assertEqual(lines[1], ":sockproto.local 324 alice #lobby :+n")

    def test_user_modes(self) -> None:
        self.alice.send(b"MODE alice +i\r\nMODE alice\r\nMODE alice +i\r\n")
        self.assertEqual(
            self.alice.lines(),
            [
                ":alice!alice@sockproto MODE alice :+i",
                ":sockproto.local 221 alice :+i",
            ],
        )
        self.alice.send(b"MODE alice +w\r\nMODE alice -i\r\n")
        self.assertEqual(
            self.alice.lines(),
            [
                ":sockproto.local 501 alice :Unknown MODE flag",
                ":alice!alice@sockproto MODE alice :-i",
            ],
        )

    def test_oper_on_a_server_without_operators(self) -> None:
        self.alice.send(b"OPER alice secret\r\n")
        self.assertEqual(codes(self.alice.lines()), ["491"])

    def test_history_comes_after_join_and_names(self) -> None:
        line, _ = self.chat.join()
        self.chat.send(line, "/nick bob", "before alice came")
        self.alice.send(b"JOIN #lobby\r\n")
        lines = self.alice.lines()
        self.assertEqual(lines[0], ":alice!alice@sockproto JOIN #lobby")
        self.assertEqual(codes(lines[1:3]), ["353", "366"])
        self.assertEqual(
            lines[3:],
            [
                ":sockproto.local NOTICE #lobby :last 1 lines of #lobby:",
                ":sockproto.local NOTICE #lobby :<bob> before alice came",
            ],
        )

    def test_colours_reach_nobody_as_stray_digits(self) -> None:
        line, lineIO = self.chat.join()
        self.chat.send(line, "/nick bob")
        bob = IrcClient(self.chat, 2)
        bob.register("carol")
        bob.send(b"JOIN #lobby\r\n")
        self.alice.send(b"JOIN #lobby\r\n")
        bob.lines()
        lineIO.clear()
        self.alice.send(b"PRIVMSG #lobby :\x0304,01red\x03 and \x02bold\x02\r\n")
        self.assertIn("<alice> red and bold", lineIO.value().decode())
        self.assertEqual(
            bob.lines(), [":alice!alice@sockproto PRIVMSG #lobby :red and bold"]
        )


class ReplyOrderTests(SynchronousTestCase):
    """
    Replies to one client leave in the order of its commands, even when
    the back end answers some of them later.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        server = LateChatServer(ChatServer("late", self.clock), self.clock)
        self.chat = ChatOnClock(server, self.clock)

    def settle(self) -> None:
        for _ in range(20):
            self.clock.advance(0.01)

    def test_a_nick_change_is_answered_before_a_later_ping(self) -> None:
        alice = IrcClient(self.chat, 1)
        alice.send(b"NICK alice\r\nUSER alice 0 * :alice\r\n")
        self.settle()
        alice.lines()
        alice.send(b"NICK NINE\r\nPING tok\r\n")
        self.settle()
        self.assertEqual(
            alice.lines(),
            [
                ":alice!alice@sockproto NICK NINE",
                ":sockproto.local PONG sockproto.local :tok",
            ],
        )

    def test_lines_sent_while_registering_are_answered_in_order(self) -> None:
        alice = IrcClient(self.chat, 1)
        alice.send(
            b"NICK alice\r\nUSER alice 0 * :alice\r\nJOIN #lobby\r\nPING a\r\n"
            b"LIST\r\nPING b\r\n"
        )
        self.settle()
        lines = alice.lines()
        self.assertEqual(
            codes(lines),
            ["001", "002", "003", "004", "005", "251", "254", "255", "422"]
            + ["JOIN", "353", "366", "PONG", "321", "322", "323", "PONG"],
        )


class ServerNameTests(SynchronousTestCase):
    def test_the_server_s_name_has_a_dot_and_can_be_chosen(self) -> None:
        chat = ChatOnClock()
        chat._irc = IrcChatFactory(chat.factory, "irc.example.org")  # type: ignore
        alice = IrcClient(chat, 1)
        lines = alice.register("alice")
        self.assertTrue(all(line.startswith(":irc.example.org ") for line in lines))
        self.assertIn("NETWORK=irc.example.org", lines[4])
        alice.send(b"PING x\r\nPRIVMSG sockproto :who\r\n")
        self.assertEqual(alice.lines()[0], ":irc.example.org PONG irc.example.org :x")
        self.assertEqual(IrcChatFactory.serverName, "sockproto.local")

    def test_a_name_without_a_dot_or_with_spaces_is_refused(self) -> None:
        chat = ChatOnClock()
        for name in ("sockproto", "a b.c", "-x.org", "x..org", "a" * 60 + ".org"):
            self.assertRaises(ValueError, IrcChatFactory, chat.factory, name)
        options = ChatOptions()
        error = self.assertRaises(
            UsageError, options.parseOptions, ["--server-name", "nodot"]
        )
        self.assertIn(
            "--server-name takes a host name with at least one dot", str(error)
        )
        options = ChatOptions()
        options.parseOptions(["--irc", "tcp:0", "--server-name", "chat.example.org"])
        self.assertEqual(options["server-name"], "chat.example.org")


class QueryTests(SynchronousTestCase):
    """
    What bot libraries ask on their own (pydle: WHOIS for every nick it
    sees), and the server's own questions.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.alice = IrcClient(self.chat, 1)
        self.alice.register("alice")
        self.bob = IrcClient(self.chat, 2)
        self.bob.register("bob")
        self.alice.send(b"JOIN #lobby,#dev\r\n")
        self.bob.send(b"JOIN #lobby,#secret\r\n")
        self.alice.lines()
        self.bob.lines()

    def test_whois_of_someone_here(self) -> None:
        self.bob.send(b"AWAY :lunch\r\n")
        self.alice.send(b"WHOIS bob\r\n")
        self.assertEqual(
            self.alice.lines(),
            [
                ":sockproto.local 311 alice bob bob sockproto * :bob",
                ":sockproto.local 319 alice bob :#lobby",  # not #secret
                ":sockproto.local 312 alice bob sockproto.local :sockproto",
                ":sockproto.local 301 alice bob :lunch",
                ":sockproto.local 318 alice bob :End of /WHOIS list",
            ],
        )

    def test_whois_of_nobody_and_of_a_server_and_nick(self) -> None:
        self.alice.send(b"WHOIS <unregistered>\r\nWHOIS nobody\r\nWHOIS\r\n")
        self.assertEqual(codes(self.alice.lines()), ["401", "318", "401", "318", "431"])
        self.alice.send(b"WHOIS sockproto.local alice\r\n")
        self.assertEqual(codes(self.alice.lines()), ["311", "319", "312", "318"])

    def test_a_private_message_to_someone_away_gets_301(self) -> None:
        self.bob.send(b"AWAY :lunch\r\n")
        self.alice.send(b"PRIVMSG bob :there?\r\nNOTICE bob :fyi\r\n")
        self.assertEqual(self.alice.lines(), [":sockproto.local 301 alice bob :lunch"])

    def test_whowas_remembers_nobody(self) -> None:
        self.alice.send(b"WHOWAS carol\r\n")
        self.assertEqual(codes(self.alice.lines()), ["406", "369"])

    def test_userhost_shows_who_is_away(self) -> None:
        self.bob.send(b"AWAY :lunch\r\n")
        self.alice.send(b"USERHOST bob alice\r\n")
        self.assertEqual(
            self.alice.lines(),
            [":sockproto.local 302 alice :bob=-bob@sockproto alice=+alice@sockproto"],
        )

    def test_the_server_s_questions(self) -> None:
        self.alice.send(b"LUSERS\r\nTIME\r\nMOTD\r\nVERSION\r\nINFO\r\nADMIN\r\n")
        lines = self.alice.lines()
        self.assertEqual(
            codes(lines),
            ["251", "254", "255", "391", "422", "351", "005", "371", "374", "423"],
        )
        users = "There are 2 users and 0 invisible on 1 servers"
        self.assertEqual(lines[0], f":sockproto.local 251 alice :{users}")
        self.assertEqual(lines[1], ":sockproto.local 254 alice 3 :channels formed")


class LongLineTests(SynchronousTestCase):
    """
    What IRC clients get is at most 512 bytes a message, CRLF included: a
    longer text comes as several messages, never cut inside a character.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock(maxLineLength=2000)
        self.alice = IrcClient(self.chat, 1)
        self.alice.register("alice")
        self.alice.send(b"JOIN #lobby\r\n")
        self.line, _ = self.chat.join()
        self.chat.send(self.line, "/nick bob")
        self.alice.lines()

    def received(self) -> List[bytes]:
        data = self.alice.transport.value()
        self.alice.transport.clear()
        return [line + b"\r\n" for line in data.split(b"\r\n") if line]

    def test_a_long_line_from_nc_comes_as_several_privmsgs(self) -> None:
        text = " ".join(f"word{n:03}" for n in range(150))  # 1,199 bytes
        self.chat.send(self.line, text)
        lines = self.received()
        self.assertGreater(len(lines), 2)
        self.assertLessEqual(max(len(line) for line in lines), 512)
        head = b":bob!bob@sockproto PRIVMSG #lobby :"
        self.assertTrue(all(line.startswith(head) for line in lines))
        said = [line[len(head) : -2].decode() for line in lines]
        self.assertEqual(" ".join(said), text)

    def test_multibyte_characters_are_never_cut(self) -> None:
        text = "é" * 700  # no space to cut at: 1,400 bytes
        self.chat.send(self.line, text)
        lines = self.received()
        self.assertLessEqual(max(len(line) for line in lines), 512)
        said = "".join(line.decode("utf-8").split(" :", 1)[1][:-2] for line in lines)
        self.assertEqual(said, text)

    def test_an_action_stays_an_action_in_each_piece(self) -> None:
        self.chat.send(self.line, "/me " + "x" * 1000)
        lines = self.received()
        self.assertGreater(len(lines), 1)
        for line in lines:
            self.assertLessEqual(len(line), 512)
            self.assertIn(b":\x01ACTION x", line)
            self.assertTrue(line.endswith(b"x\x01\r\n"))


class SplitTextTests(SynchronousTestCase):
    @given(st.text(max_size=400), st.integers(min_value=4, max_value=100))
    def test_pieces_fit_and_lose_only_the_spaces_cut_at(
        self, text: str, budget: int
    ) -> None:
        pieces = split_text(text, budget)
        for piece in pieces:
            self.assertLessEqual(len(piece.encode("utf-8")), budget)
        joined = "".join(pieces)
        self.assertEqual(joined.replace(" ", ""), text.replace(" ", ""))
        self.assertGreaterEqual(len(joined), len(text) - (len(pieces) - 1))


class NoticeAndQuitTests(SynchronousTestCase):
    """
    A NOTICE stays a NOTICE end to end (bots answer PRIVMSGs, never
    NOTICEs); a QUIT reaches each user sharing a channel once.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.alice = IrcClient(self.chat, 1)
        self.alice.register("alice")
        self.bot = IrcClient(self.chat, 2)
        self.bot.register("bot")
        for client in (self.alice, self.bot):
            client.send(b"JOIN #lobby,#dev\r\n")
        self.line, self.lineIO = self.chat.join()
        self.chat.send(self.line, "/nick carol")
        for client in (self.alice, self.bot):
            client.lines()
        self.lineIO.clear()

    def test_a_notice_to_a_channel_stays_a_notice(self) -> None:
        self.alice.send(b"NOTICE #lobby :the build is green\r\n")
        self.assertEqual(
            self.bot.lines(),
            [":alice!alice@sockproto NOTICE #lobby :the build is green"],
        )
        self.assertIn("<alice> the build is green", self.lineIO.value().decode())
        newcomer, newcomerIO = self.chat.join()
        self.assertNotIn("the build is green", newcomerIO.value().decode())

    def test_a_notice_to_a_nick_stays_a_notice_and_never_errs(self) -> None:
        self.alice.send(b"NOTICE bot :psst\r\nNOTICE nobody :hello?\r\n")
        self.assertEqual(self.bot.lines(), [":alice!alice@sockproto NOTICE bot :psst"])
        self.assertEqual(self.alice.lines(), [])
        self.alice.send(b"NOTICE carol :to nc\r\n")
        self.assertIn("*alice* -> *carol* to nc", self.lineIO.value().decode())

    def test_echo_message_echoes_notices(self) -> None:
        self.alice.send(b"CAP REQ :echo-message\r\nNOTICE #dev :echoed\r\n")
        self.assertIn(":alice!alice@sockproto NOTICE #dev :echoed", self.alice.lines())

    def test_a_quit_is_one_quit_for_every_shared_channel(self) -> None:
        self.alice.send(b"QUIT :bye\r\n")
        self.alice.protocol.connectionLost()
        self.chat.clock.advance(0)
        self.assertEqual(self.bot.lines(), [":alice!alice@sockproto QUIT :Quit: bye"])
        self.assertIn("alice left #lobby (Quit: bye)", self.lineIO.value().decode())

    def test_the_same_nick_quitting_again_later_is_shown_again(self) -> None:
        self.alice.send(b"QUIT :bye\r\n")
        self.alice.protocol.connectionLost()
        self.chat.clock.advance(0)  # the quit is shown now
        self.chat.clock.advance(60)
        self.bot.lines()
        again = IrcClient(self.chat, 3)
        again.register("alice")
        again.send(b"JOIN #lobby\r\nQUIT :again\r\n")
        again.protocol.connectionLost()
        self.chat.clock.advance(0)
        lines = self.bot.lines()
        self.assertIn(":alice!alice@sockproto QUIT :Quit: again", lines)


class PydleTests(TestCase):
    """
    A bot written with pydle (PyPI), which asks WHOIS for every user it
    sees and believes only what the answers say, over real loopback
    sockets beside an nc-like line client.
    """

    timeout = 60

    @inlineCallbacks
    def test_a_pydle_bot_knows_itself_joins_talks_parts_and_quits(self) -> Any:
        try:
            import pydle  # noqa: F401
        except ImportError:
            raise SkipTest(
                "pydle is missing: pip install 'pydle>=1.2' (the test extra"
                " installs it on Python 3.10 and later, which pydle needs)"
            ) from None
        ircd, nc = yield nc_and_ircd(self)
        bot = PydleBot(ircd.portNumber)
        self.addCleanup(bot.stop)
        yield wait_for(lambda: bot.joined, timeout=20)
        yield nc.expect("pydlebot joined #lobby")
        self.assertEqual(bot.call(lambda c: c.nickname), "pydlebot")
        self.assertTrue(bot.call(lambda c: c.in_channel("#lobby")))
        nc.send("hello pydle")
        yield nc.expect("<pydlebot> hello ncuser")
        bot.run(lambda c: c.notice("#lobby", "a notice, not to be answered"))
        yield nc.expect("<pydlebot> a notice, not to be answered")
        bot.run(lambda c: c.part("#lobby", "off"))
        yield nc.expect("pydlebot left #lobby (off)")
        yield wait_for(lambda: not bot.call(lambda c: c.in_channel("#lobby")))
        bot.run(lambda c: c.quit("done"))
        yield wait_for(lambda: bot.call(lambda c: not c.connected))
        self.assertEqual(bot.errors, [])
        self.assertNotIn("421", bot.numerics)  # no unknown command


class PydleBot:
    """
    A pydle client on an asyncio loop in a thread of its own: joins
    #lobby and answers "hello pydle".
    """

    def __init__(self, port: int) -> None:
        import asyncio

        import pydle

        test = self

        class Client(pydle.Client):  # type: ignore[misc]
            async def on_connect(self) -> None:
                await super().on_connect()
                await self.join("#lobby")

            async def on_join(self, channel: str, user: str) -> None:
                await super().on_join(channel, user)
                if user == self.nickname:
                    test.joined = True

            async def on_channel_message(self, target: str, by: str, text: str) -> None:
                await super().on_channel_message(target, by, text)
                if text == "hello pydle":
                    await self.message(target, f"hello {by}")

            async def on_raw(self, message: Any) -> None:
                test.numerics.append(str(message.command).zfill(3))
                if message.command == "ERROR" and test.quitting is False:
                    test.errors.append(message._raw)
                await super().on_raw(message)

        self.joined = False
        self.quitting = False
        self.errors: List[str] = []
        self.numerics: List[str] = []
        self.loop = asyncio.new_event_loop()
        self.client = Client("pydlebot", realname="a pydle bot")
        connect = self.client.connect("127.0.0.1", port, tls=False)
        self.thread = threading.Thread(target=self._run, args=(connect,), daemon=True)
        self.thread.start()

    def _run(self, connect: Any) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.create_task(connect)
        self.loop.run_forever()

    def run(self, action: Any) -> None:
        """Have the bot's loop run the coroutine C{action(client)}."""
        import asyncio

        if action.__name__ == "<lambda>" and "quit" in action.__code__.co_names:
            self.quitting = True
        asyncio.run_coroutine_threadsafe(action(self.client), self.loop).result(10)

    def call(self, question: Any) -> Any:
        """C{question(client)}, asked in the bot's loop."""
        import asyncio

        async def ask() -> Any:
            return question(self.client)

        return asyncio.run_coroutine_threadsafe(ask(), self.loop).result(10)

    def stop(self) -> None:
        if self.client.connected:
            self.quitting = True
            self.run(lambda c: c.disconnect(expected=True))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class WeeChatTests(TestCase):
    """
    WeeChat (Debian's weechat-headless), driven through its FIFO, against
    the IRC port, beside an nc-like line client: it joins, talks, acts,
    asks WHOIS, sends a notice, changes its nickname and parts, and shows
    no error or unknown command.
    """

    timeout = 90

    @inlineCallbacks
    def test_weechat_joins_talks_whois_notice_nick_part(self) -> Any:
        if shutil.which("weechat-headless") is None:
            raise SkipTest("weechat-headless missing: apt-get install weechat-headless")
        ircd, nc = yield nc_and_ircd(self)
        home = temporary_directory(self)
        weechat = WeeChat(home, ircd.portNumber)
        self.addCleanup(weechat.stop)
        yield nc.expect("weebot joined #lobby", 20)
        yield wait_for(lambda: "has joined #lobby" in weechat.log("irc.sp.#lobby"))
        nc.send("hello weechat")
        yield wait_for(lambda: "hello weechat" in weechat.log("irc.sp.#lobby"))
        weechat.send("irc.sp.#lobby *hello from weechat")
        yield nc.expect("<weebot> hello from weechat", 10)
        weechat.send("irc.sp.#lobby */me waves")
        yield nc.expect("* weebot waves", 10)
        weechat.send("irc.server.sp */whois ncuser")
        yield wait_for(lambda: "End of /WHOIS list" in weechat.log("irc.server.sp"))
        weechat.send("irc.sp.#lobby */notice #lobby a notice")
        yield nc.expect("<weebot> a notice", 10)
        weechat.send("irc.server.sp */nick weebot2")
        yield nc.expect("weebot is now known as weebot2", 10)
        weechat.send("irc.sp.#lobby */part #lobby bye")
        yield nc.expect("weebot2 left #lobby (bye)", 10)
        shown = weechat.log("irc.server.sp") + weechat.log("irc.sp.#lobby")
        for sign in ("Unknown command", "421", "not a channel", "rror"):
            self.assertNotIn(sign, shown)


class WeeChat:
    """
    A weechat-headless in its own home folder, its logs written at once,
    commands sent through its FIFO.
    """

    def __init__(self, home: str, port: int) -> None:
        self.home = home
        commands = ";".join(
            [
                f"/server add sp 127.0.0.1/{port} -notls",
                "/set irc.server.sp.nicks weebot",
                "/set irc.server.sp.autojoin #lobby",
                "/set fifo.file.enabled on",
                "/set logger.file.flush_delay 0",
                "/connect sp",
            ]
        )
        with open(os.path.join(home, "weechat.out"), "wb") as out:
            self.process = subprocess.Popen(
                ["weechat-headless", "--dir", home, "--stdout", "-r", commands],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, buffer: str) -> str:
        path = os.path.join(self.home, "logs", f"{buffer}.weechatlog")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def send(self, line: str) -> None:
        [fifo] = [n for n in os.listdir(self.home) if n.startswith("weechat_fifo")]
        with open(os.path.join(self.home, fifo), "w", encoding="utf-8") as f:
            f.write(line + "\n")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class OlderBackEndTests(SynchronousTestCase):
    """
    A back end written before notices and quits existed (no C{notice},
    C{quit} or C{notify}) still serves IRC users: a notice is said, a quit
    is a leave, a private notice is told.
    """

    def test_notices_and_quits_fall_back(self) -> None:
        class OldRoom:
            def __init__(self, room: Any) -> None:
                self.room = room
                self.name = room.name
                for name in ("join", "leave", "say", "act", "nicks", "flush"):
                    setattr(self, name, getattr(room, name))

        class OldServer:
            def __init__(self, server: ChatServer) -> None:
                self.server = server
                for name in ("name", "defaultRoom", "register", "rename"):
                    setattr(self, name, getattr(server, name))
                for name in ("unregister", "inUse", "tell", "rooms", "counts"):
                    setattr(self, name, getattr(server, name))
                self.reserved = server.reserved

            def room(self, name: str) -> Any:
                return self.server.room(name).addCallback(OldRoom)

        clock = Clock()
        chat = ChatOnClock(OldServer(ChatServer("old", clock)), clock)
        alice, bob = IrcClient(chat, 1), IrcClient(chat, 2)
        for client, nick in ((alice, "alice"), (bob, "bob")):
            client.register(nick)
            client.send(b"JOIN #lobby\r\n")
        alice.lines()
        bob.lines()
        alice.send(b"NOTICE #lobby :hi\r\nNOTICE bob :psst\r\nQUIT :bye\r\n")
        alice.protocol.connectionLost()
        chat.clock.advance(0)
        self.assertEqual(
            bob.lines(),
            [
                ":alice!alice@sockproto PRIVMSG #lobby :hi",
                ":alice!alice@sockproto PRIVMSG bob :psst",
                ":alice!alice@sockproto PART #lobby :Quit: bye",
            ],
        )


class WhoTests(SynchronousTestCase):
    def test_who_of_a_nick_and_away_people_show_g(self) -> None:
        chat = ChatOnClock()
        alice, bob = IrcClient(chat, 1), IrcClient(chat, 2)
        alice.register("alice")
        bob.register("bob")
        bob.send(b"AWAY :out\r\nJOIN #lobby\r\n")
        alice.send(b"JOIN #lobby\r\n")
        alice.lines()
        alice.send(b"WHO bob\r\nWHO nobody\r\nWHO b*\r\nWHO #lobby\r\n")
        lines = [line.split(" ", 3)[3] for line in alice.lines()]  # after "alice"
        host = "sockproto sockproto.local"
        self.assertEqual(
            lines,
            [
                f"* bob {host} bob G :0 bob",
                "bob :End of /WHO list",
                "nobody :End of /WHO list",
                "b* :End of /WHO list",
                f"#lobby bob {host} bob G :0 bob",
                f"#lobby alice {host} alice H :0 alice",
                "#lobby :End of /WHO list",
            ],
        )


class NamesCapabilityTests(SynchronousTestCase):
    def test_userhost_in_names_and_multi_prefix(self) -> None:
        chat = ChatOnClock()
        alice = IrcClient(chat, 1)
        alice.send(b"CAP LS 302\r\nCAP REQ :multi-prefix userhost-in-names\r\n")
        alice.send(b"CAP END\r\nNICK alice\r\nUSER a 0 * :a\r\n")
        self.assertIn(
            ":sockproto.local CAP * ACK :multi-prefix userhost-in-names", alice.lines()
        )
        alice.send(b"JOIN #lobby\r\n")
        self.assertIn(
            ":sockproto.local 353 alice = #lobby :alice!alice@sockproto", alice.lines()
        )


class InviteTests(SynchronousTestCase):
    def test_an_invitation_is_a_notice_to_the_invited(self) -> None:
        chat = ChatOnClock()
        alice, bob = IrcClient(chat, 1), IrcClient(chat, 2)
        alice.register("alice")
        bob.register("bob")
        alice.send(b"JOIN #dev\r\n")
        alice.lines()
        line, lineIO = chat.join()
        chat.send(line, "/nick carol")
        alice.send(b"INVITE bob #dev\r\nINVITE carol #dev\r\n")
        alice.send(b"INVITE alice #dev\r\nINVITE nobody #dev\r\nINVITE bob #other\r\n")
        self.assertEqual(codes(alice.lines()), ["341", "341", "443", "401", "442"])
        self.assertEqual(
            bob.lines(),
            [":alice!alice@sockproto NOTICE bob :alice invites you to join #dev"],
        )
        self.assertIn("*alice* -> *carol* alice invites you", lineIO.value().decode())


class ServerTimeTests(SynchronousTestCase):
    """
    IRCv3 server-time: a client that asks gets each line with the time it
    was said, the room's history at its own times.
    """

    def test_history_and_live_lines_carry_their_times(self) -> None:
        chat = ChatOnClock()
        chat.clock.advance(1764786000.25)  # 2025-12-03 18:20:00.250 UTC
        line, _ = chat.join()
        chat.send(line, "/nick bob", "said before", "/me waved")
        chat.clock.advance(60)
        timed, plain = IrcClient(chat, 1), IrcClient(chat, 2)
        timed.send(b"CAP REQ :server-time\r\nCAP END\r\n")
        timed.register("alice")
        plain.register("carol")
        for client in (timed, plain):
            client.send(b"JOIN #lobby\r\n")
        self.assertEqual(
            [line for line in timed.lines() if "PRIVMSG" in line],
            [
                "@time=2025-12-03T18:20:00.250Z :bob!bob@sockproto PRIVMSG #lobby"
                " :said before",
                "@time=2025-12-03T18:20:00.250Z :bob!bob@sockproto PRIVMSG #lobby"
                " :\x01ACTION waved\x01",
            ],
        )
        self.assertEqual(
            plain.lines()[-1], ":sockproto.local NOTICE #lobby :* bob waved"
        )
        timed.lines()
        chat.send(line, "now")
        self.assertEqual(
            timed.lines(),
            ["@time=2025-12-03T18:21:00.250Z :bob!bob@sockproto PRIVMSG #lobby :now"],
        )
        self.assertEqual(plain.lines(), [":bob!bob@sockproto PRIVMSG #lobby :now"])


class MessageTagTests(SynchronousTestCase):
    def test_history_in_a_chathistory_batch(self) -> None:
        chat = ChatOnClock()
        chat.clock.advance(1764786000.25)
        line, _ = chat.join()
        chat.send(line, "/nick bob", "earlier")
        alice = IrcClient(chat, 1)
        alice.send(b"CAP REQ :batch server-time\r\nCAP END\r\n")
        alice.register("alice")
        alice.send(b"JOIN #lobby\r\n")
        lines = alice.lines()
        start = [n for n, text in enumerate(lines) if " BATCH +" in text][0]
        ref = lines[start].split()[2][1:]
        self.assertEqual(
            lines[start:],
            [
                f":sockproto.local BATCH +{ref} chathistory :#lobby",
                f"@batch={ref};time=2025-12-03T18:20:00.250Z"
                " :bob!bob@sockproto PRIVMSG #lobby :earlier",
                f":sockproto.local BATCH -{ref}",
            ],
        )

    def test_account_tag_names_who_is_logged_in(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(carol=b"secret")
        chat = ChatOnClock(checker=checker)
        alice = IrcClient(chat, 1)
        alice.send(b"CAP REQ :account-tag\r\nCAP END\r\n")
        alice.register("alice")
        carol = IrcClient(chat, 2)
        carol.send(b"PASS secret\r\n")
        carol.register("carol")
        for client in (alice, carol):
            client.send(b"JOIN #lobby\r\n")
        alice.lines()
        carol.send(b"PRIVMSG #lobby :hi\r\n")
        line, _ = chat.join()
        chat.send(line, "a guest")
        lines = alice.lines()
        self.assertIn("@account=carol :carol!carol@sockproto PRIVMSG #lobby :hi", lines)
        said = [text for text in lines if text.endswith(":a guest")]
        self.assertEqual(len(said), 1)
        self.assertTrue(said[0].startswith(":guest"), said)


class CompareScriptTests(TestCase):
    """
    benchmarks/irc_compare.py, the script behind the README's table of IRC
    answers, runs against sockproto as a user runs it.
    """

    timeout = 120

    @inlineCallbacks
    def test_the_comparison_script_runs_against_sockproto(self) -> Any:
        from twisted.internet.utils import getProcessOutputAndValue

        script = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
        args = [os.path.join(script, "irc_compare.py"), "--servers", "sockproto"]
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, args, env=os.environ
        )
        self.assertEqual(code, 0, err.decode())
        rows = out.decode().splitlines()
        self.assertIn("WHOIS nobody                       sockproto: 401 318", rows)
        self.assertIn("unknown command                    sockproto: 421", rows)
