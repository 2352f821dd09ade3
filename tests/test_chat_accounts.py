"""
Registered nicknames (C{--auth}): only their password holders take them.
"""

import os

from twisted.cred import strcred
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat import ChatFactory, ChatServer
from sockproto.service import ChatOptions
from sockproto.testing import connect, temporary_directory


class AccountTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.useChecker(strcred.makeChecker("memory:alice:secret:bob:hunter2"))

    def useChecker(self, checker: object) -> None:
        self.clock = Clock()
        server = ChatServer("accounts", self.clock)
        factory = ChatFactory(server, clock=self.clock, rateLimit=0, checker=checker)
        self.protocol, self.transport = connect(factory)
        self.clock.advance(0)
        self.transport.clear()

    def nick(self, argument: str) -> str:
        self.transport.clear()
        self.protocol.dataReceived(f"/nick {argument}\n".encode())
        self.clock.advance(0)
        return self.transport.value().decode().strip()

    def test_unregistered_nick_is_free(self) -> None:
        self.assertEqual(self.nick("carol"), "* guest1 is now known as carol")

    def test_registered_nick_needs_its_password(self) -> None:
        self.assertEqual(
            self.nick("alice"),
            "error: nickname alice is registered: /nick alice PASSWORD",
        )
        self.assertEqual(self.nick("alice nope"), "error: wrong password for alice")
        self.assertEqual(self.protocol.nick, "guest1")

    def test_right_password_takes_the_nick_ignoring_case(self) -> None:
        self.assertEqual(self.nick("Alice secret"), "* guest1 is now known as Alice")
        self.assertEqual(self.protocol.nick, "Alice")

    def test_password_for_unregistered_nick_is_an_error(self) -> None:
        self.assertEqual(
            self.nick("carol pw"),
            "error: nickname carol is not registered: /nick carol",
        )

    def test_wrong_passwords_are_slowed_down(self) -> None:
        self.assertEqual(self.nick("bob x"), "error: wrong password for bob")
        self.assertEqual(
            self.nick("bob hunter2"),
            "error: too many wrong passwords for bob: try again in 1 s",
        )
        self.clock.advance(1)
        self.assertEqual(self.nick("bob y"), "error: wrong password for bob")
        self.clock.advance(1)
        self.assertIn("try again in 1 s", self.nick("bob hunter2"))
        self.clock.advance(1)
        self.assertEqual(self.nick("bob hunter2"), "* guest1 is now known as bob")

    def test_accounts_file(self) -> None:
        path = os.path.join(temporary_directory(self), "accounts")
        with open(path, "w") as f:
            f.write("dave:letmein\n")
        self.useChecker(strcred.makeChecker(f"file:{path}"))
        self.assertIn("is registered", self.nick("dave"))
        self.assertEqual(self.nick("dave wrong"), "error: wrong password for dave")
        self.clock.advance(1)
        self.assertEqual(self.nick("dave letmein"), "* guest1 is now known as dave")


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
