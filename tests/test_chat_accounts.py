"""
Registered nicknames (C{--auth}): only their password holders take them,
whatever the case or look-alike letters, and guessers are slowed down
without locking the owner out.
"""

import os
from typing import Any, List, Tuple

from twisted.cred import strcred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat.accounts import Accounts, UnsupportedCheckerError
from sockproto.tap import ChatOptions
from sockproto.testing import ChatOnClock, temporary_directory


class ChatWithAccounts(SynchronousTestCase):
    """
    A chat with accounts on a Clock; clients connect from chosen addresses.
    """

    auth = "memory:alice:secret:bob:hunter2"

    def setUp(self) -> None:
        self.useChecker(strcred.makeChecker(self.auth))

    def useChecker(self, checker: object) -> None:
        self.chat = ChatOnClock(checker=checker)
        self.clock, self.server = self.chat.clock, self.chat.server
        self.factory = self.chat.factory
        self.protocol, self.transport = self.connect()

    def connect(self, host: str = "127.0.0.1") -> Tuple[Any, StringTransport]:
        protocol, transport = self.chat.join(host)
        transport.clear()
        return protocol, transport

    def nick(self, argument: str, client: Any = None) -> str:
        protocol, transport = client or (self.protocol, self.transport)
        transport.clear()
        protocol.dataReceived(f"/nick {argument}\n".encode())
        self.clock.advance(0)
        return transport.value().decode().strip()


class AccountTests(ChatWithAccounts):
    def test_unregistered_nick_is_free(self) -> None:
        self.assertEqual(self.nick("carol"), "-!- guest1 is now known as carol")

    def test_registered_nick_needs_its_password(self) -> None:
        self.assertEqual(
            self.nick("alice"),
            "-!- error: nickname alice is registered: /nick alice PASSWORD",
        )
        self.assertEqual(self.nick("alice nope"), "-!- error: wrong password for alice")
        self.assertEqual(self.protocol.nick, "guest1")

    def test_right_password_takes_the_nick_ignoring_case(self) -> None:
        self.assertEqual(self.nick("Alice secret"), "-!- guest1 is now known as Alice")
        self.assertEqual(self.protocol.nick, "Alice")

    def test_every_case_of_a_registered_nick_needs_the_password(self) -> None:
        for nick in ["alice", "ALICE", "aLiCe", "Alice"]:
            self.assertIn("is registered", self.nick(nick))
        self.assertEqual(self.protocol.nick, "guest1")

    def test_look_alikes_of_a_registered_nick_are_refused(self) -> None:
        for nick in ["aIice", "a1ice", "ALlCE", "b0b"]:
            self.assertIn("looks like registered", self.nick(nick))
        self.assertEqual(self.protocol.nick, "guest1")

    def test_password_for_unregistered_nick_is_an_error(self) -> None:
        self.assertEqual(
            self.nick("carol pw"),
            "-!- error: nickname carol is not registered: /nick carol",
        )

    def test_guest_nicks_skip_registered_ones(self) -> None:
        self.useChecker(strcred.makeChecker("memory:guest2:pw:Guest3:pw"))
        self.assertEqual(self.protocol.nick, "guest1")
        second, _ = self.connect()
        self.assertEqual(second.nick, "guest4")


class GuessingTests(ChatWithAccounts):
    def test_a_guesser_is_disconnected_after_three_wrong_passwords(self) -> None:
        self.assertIn("wrong password", self.nick("alice a"))
        self.assertIn("wrong password", self.nick("alice b"))
        self.assertFalse(self.transport.disconnecting)
        self.assertIn("disconnecting", self.nick("alice c"))
        self.assertTrue(self.transport.disconnecting)

    def test_the_owner_gets_in_however_long_someone_guesses(self) -> None:
        guesses = 0
        for _ in range(60):  # an attacker reconnecting all the time
            guesser = self.connect("10.6.6.6")
            for attempt in range(3):
                answer = self.nick(f"alice x{attempt}", guesser)
                if answer.startswith("-!- error: wrong password"):
                    guesses += 1
            self.clock.advance(1)
        # The attacker's address was slowed to one guess in 30 s.
        self.assertLess(guesses, 10 + 60 / 30 + 1)
        owner = self.connect("192.0.2.1")
        self.assertIn("is now known as alice", self.nick("alice secret", owner))

    def test_an_address_over_its_guesses_is_told_to_wait(self) -> None:
        for n in range(4):
            guesser = self.connect("10.6.6.6")
            for attempt in range(3):
                self.nick(f"alice {n}{attempt}", guesser)
        answer = self.nick("alice secret", self.connect("10.6.6.6"))
        self.assertEqual(
            answer, "-!- error: too many wrong passwords from your address: try later"
        )
        self.clock.advance(30)
        later = self.connect("10.6.6.6")
        self.assertIn("now known as alice", self.nick("alice secret", later))

    def test_right_and_wrong_password_for_a_nick_in_use_look_the_same(self) -> None:
        owner = self.connect("192.0.2.1")
        self.nick("alice secret", owner)
        events: List[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        wrong = self.nick("alice nope")
        right = self.nick("alice secret")
        self.assertEqual(wrong, "-!- error: nickname alice is taken")
        self.assertEqual(right, wrong)
        self.assertEqual(self.protocol.session.wrongPasswords, 2)
        warnings = [e["log_format"] for e in events if e["log_level"].name == "warn"]
        self.assertTrue(any("right password" in w for w in warnings), warnings)


class FileTests(ChatWithAccounts):
    def writeFile(self, text: str) -> str:
        path = os.path.join(temporary_directory(self), "accounts")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_accounts_file(self) -> None:
        path = self.writeFile("dave:letmein\n")
        self.useChecker(strcred.makeChecker(f"file:{path}"))
        self.assertIn("is registered", self.nick("dave"))
        self.assertEqual(self.nick("dave wrong"), "-!- error: wrong password for dave")
        self.assertEqual(self.nick("dave letmein"), "-!- guest1 is now known as dave")

    def test_file_names_ignore_case(self) -> None:
        path = self.writeFile("Alice:wonderland\n")
        self.useChecker(strcred.makeChecker(f"file:{path}"))
        for nick in ["alice", "ALICE", "aLiCe"]:
            self.assertIn("is registered", self.nick(nick))
        self.assertEqual(
            self.nick("alice wonderland"), "-!- guest1 is now known as alice"
        )

    def test_file_is_read_again_when_it_changes(self) -> None:
        path = self.writeFile("dave:letmein\n")
        accounts = Accounts(strcred.makeChecker(f"file:{path}"), Clock())
        self.assertEqual(accounts.registeredName("erin"), None)
        with open(path, "a") as f:
            f.write("erin:pw2\n")
        self.assertEqual(accounts.registeredName("ERIN"), "erin")

    def test_file_is_not_read_again_when_unchanged(self) -> None:
        path = self.writeFile("dave:letmein\n")
        accounts = Accounts(strcred.makeChecker(f"file:{path}"), Clock())
        reads: List[int] = []
        original = accounts.reload
        accounts.reload = lambda: reads.append(1) or original()  # type: ignore
        for _ in range(100):
            accounts.registeredName("dave")
        self.assertEqual(reads, [])

    def test_unreadable_file_is_refused(self) -> None:
        checker = strcred.makeChecker("file:/nonexistent/accounts")
        self.assertRaises(OSError, Accounts, checker, Clock())

    def test_checker_that_cannot_list_names_is_refused(self) -> None:
        self.assertRaises(UnsupportedCheckerError, Accounts, object(), Clock())


class AuthOptionTests(SynchronousTestCase):
    def test_auth_option_builds_accounts(self) -> None:
        options = ChatOptions()
        options.parseOptions(["--auth", "memory:alice:secret"])
        factory = options.buildFactory()
        self.assertEqual(factory.accounts.registeredName("ALICE"), "alice")  # type: ignore

    def test_no_auth_means_no_accounts(self) -> None:
        options = ChatOptions()
        options.parseOptions([])
        self.assertIsNone(options.buildFactory().accounts)  # type: ignore[attr-defined]

    def test_auth_twice_is_an_error(self) -> None:
        options = ChatOptions()
        path = os.path.join(temporary_directory(self), "accounts")
        open(path, "w").close()
        args = ["--auth", "memory:a:b", "--auth", f"file:{os.path.abspath(path)}"]
        self.assertRaises(usage.UsageError, options.parseOptions, args)

    def test_missing_file_is_a_usage_error(self) -> None:
        error = self.assertRaises(
            usage.UsageError,
            ChatOptions().parseOptions,
            ["--auth", "file:/nonexistent/accounts"],
        )
        self.assertIn("/nonexistent/accounts", str(error))

    def test_unix_auth_is_a_usage_error(self) -> None:
        error = self.assertRaises(
            usage.UsageError, ChatOptions().parseOptions, ["--auth", "unix"]
        )
        self.assertIn("memory: or file:", str(error))
