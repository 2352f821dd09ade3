# -*- test-case-name: tests.test_chat_accounts -*-
"""
Registered nicknames for the chat (C{--auth}), on L{twisted.cred}: only the
holder of a registered nickname's password may take it, and wrong
passwords are slowed down.
"""

from typing import Any, Dict, Optional, Tuple, Union

from twisted.cred.checkers import (
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime

__all__ = ["Accounts"]

Name = Union[str, bytes]


class Accounts:
    """
    The registered nicknames of a chat, checked by a cred checker
    (C{memory:} and C{file:} from C{--auth}).

    After a wrong password for a nickname, the next attempt for it must wait
    1 s, then 2, 4, ... up to L{maxDelay}; a right password resets that.
    """

    maxDelay = 60.0

    def __init__(self, checker: ICredentialsChecker, clock: IReactorTime) -> None:
        self.checker = checker
        self.clock = clock
        self._failures: Dict[str, Tuple[int, float]] = {}

    def registeredName(self, nick: str) -> Optional[Name]:
        """
        The account name C{nick} stands for (ignoring case), or None.
        """
        checker = self.checker
        if isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
            for name in checker.users:
                text = name.decode("utf-8") if isinstance(name, bytes) else name
                if text.lower() == nick.lower():
                    return name  # type: ignore[no-any-return]
            return None
        if isinstance(checker, FilePasswordDB):
            for candidate in (nick, nick.lower()):
                try:
                    return checker.getUser(candidate.encode("utf-8"))[0]
                except KeyError:
                    pass
        return None

    def waitFor(self, nick: str) -> float:
        """
        Seconds to wait before the next password for C{nick} is checked.
        """
        failures, last = self._failures.get(nick.lower(), (0, 0.0))
        if not failures:
            return 0.0
        delay = min(self.maxDelay, 2.0 ** (failures - 1))
        return max(0.0, last + delay - self.clock.seconds())

    def check(self, name: Name, password: str) -> "Deferred[bool]":
        """
        Whether C{password} is the password of account C{name}.
        """
        # strcred's memory: accounts are text, file: accounts are bytes.
        secret: Any = password.encode("utf-8") if isinstance(name, bytes) else password
        credentials = UsernamePassword(name, secret)  # type: ignore[arg-type]
        d: Deferred[Any] = maybeDeferred(self.checker.requestAvatarId, credentials)
        d.addCallbacks(lambda _: True, self._wrong)
        d.addCallback(self._remember, _text(name))
        return d

    def _wrong(self, failure: Any) -> bool:
        failure.trap(UnauthorizedLogin)
        return False

    def _remember(self, right: bool, nick: str) -> bool:
        if right:
            self._failures.pop(nick.lower(), None)
        else:
            failures, _ = self._failures.get(nick.lower(), (0, 0.0))
            self._failures[nick.lower()] = (failures + 1, self.clock.seconds())
        return right


def _text(name: Name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name
