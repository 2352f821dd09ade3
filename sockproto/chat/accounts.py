# -*- test-case-name: tests.test_chat_accounts -*-
"""
Registered nicknames for the chat (C{--auth}): only the holder of a
registered nickname's password may take it, or any nickname that looks
like it.

Wrong passwords slow down the I{guesser}, never the account: a connection
that gives L{Accounts.maxWrongPerConnection} wrong passwords is
disconnected, and an address that keeps guessing has to wait.  The owner,
from another address, always gets in with the right password.
"""

import hmac
import os
from typing import Dict, Iterable, Optional, Tuple

from twisted.cred.checkers import (
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from ..lines import TokenBucket
from ..logs import SafeLogger
from .names import nick_key

__all__ = ["Accounts", "UnsupportedCheckerError"]


class UnsupportedCheckerError(ValueError):
    """
    The C{--auth} checker cannot say which nicknames are registered.
    """


class Accounts:
    """
    The registered nicknames of a chat, from a C{memory:} or C{file:}
    checker of L{twisted.cred.strcred}.  A file is read once, then again
    whenever it changes (or on L{reload}).

    @ivar maxWrongPerConnection: wrong passwords after which a connection
        is disconnected.
    @ivar guessesPerAddress: how many password attempts one address (one
        IPv6 /64) may make in a burst ...
    @ivar guessRate: ... and then how many a second.
    """

    log = SafeLogger()
    maxWrongPerConnection = 3
    guessesPerAddress = 10
    guessRate = 1 / 30

    def __init__(self, checker: ICredentialsChecker, clock: IReactorTime) -> None:
        """
        @raise UnsupportedCheckerError: if C{checker} cannot list its names.
        @raise OSError: if the file of a C{file:} checker cannot be read.
        """
        if not isinstance(
            checker, (InMemoryUsernamePasswordDatabaseDontUse, FilePasswordDB)
        ):
            raise UnsupportedCheckerError(
                "this --auth cannot tell which nicknames are registered:"
                " use memory: or file:"
            )
        self.wrongPasswords = 0
        """Wrong passwords given so far, for C{--metrics}."""
        self.checker = checker
        self.clock = clock
        self._passwords: Dict[str, Tuple[str, bytes]] = {}
        self._stamp: Optional[Tuple[float, int]] = None
        self._guessers: Dict[str, TokenBucket] = {}
        self.reload()

    def reload(self) -> int:
        """
        Read the registered names again; return how many there are.

        @raise OSError: if the file cannot be read.
        """
        checker = self.checker
        if isinstance(checker, FilePasswordDB):
            self._stamp = _stamp(checker.filename)
            pairs = _read_file(checker)
        else:
            pairs = checker.users.items()
        self._passwords = {
            nick_key(_text(name)): (_text(name), _bytes(password))
            for name, password in pairs
        }
        return len(self._passwords)

    def _reloadIfChanged(self) -> None:
        checker = self.checker
        if not isinstance(checker, FilePasswordDB):
            return
        try:
            stamp: Optional[Tuple[float, int]] = _stamp(checker.filename)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp  # an unreadable file is reported once
            self.reloadLogged()

    def reloadLogged(self) -> None:
        """
        L{reload}, saying in the log what came of it; on an error, the
        names read before stay.
        """
        path = getattr(self.checker, "filename", "memory:")
        try:
            count = self.reload()
        except OSError as e:
            self.log.error(
                "chat: cannot read {path} ({error}): keeping the nicknames read before",
                path=path,
                error=e.strerror or e,
            )
        else:
            self.log.info(
                "chat: {count} registered nicknames read from {path}",
                count=count,
                path=path,
            )

    def registeredName(self, nick: str) -> Optional[str]:
        """
        The registered nickname that C{nick} is, or looks like, or None.
        """
        self._reloadIfChanged()
        entry = self._passwords.get(nick_key(nick))
        return entry[0] if entry is not None else None

    def mayGuess(self, address: Optional[str]) -> bool:
        """
        Whether C{address} may try a password now: False once it has had
        too many wrong ones lately.
        """
        bucket = self._guessers.get(address or "")
        return bucket is None or bucket.wait() == 0

    def wrongGuess(self, address: Optional[str]) -> None:
        """
        Count a wrong password from C{address}.
        """
        self.wrongPasswords += 1
        key = address or ""
        bucket = self._guessers.get(key)
        if bucket is None:
            if len(self._guessers) > 10000:
                self._forgetIdleGuessers()
            bucket = self._guessers[key] = TokenBucket(
                self.guessRate, self.guessesPerAddress, self.clock.seconds
            )
        bucket.take()

    def _forgetIdleGuessers(self) -> None:
        for key, bucket in list(self._guessers.items()):
            if bucket.wait() == 0 and bucket.tokens >= bucket.burst:
                del self._guessers[key]

    def check(self, name: str, password: str) -> "Deferred[bool]":
        """
        Whether C{password} is the password of registered nickname
        C{name}, compared in constant time.
        """
        entry = self._passwords.get(nick_key(name))
        given = password.encode("utf-8")
        if entry is None:
            hmac.compare_digest(given, given)
            return succeed(False)
        return succeed(hmac.compare_digest(given, entry[1]))


def _stamp(path: str) -> Tuple[float, int]:
    status = os.stat(path)
    return status.st_mtime, status.st_size


def _read_file(checker: FilePasswordDB) -> Iterable[Tuple[bytes, bytes]]:
    with open(checker.filename, "rb") as f:
        lines = f.read().splitlines()
    pairs = []
    for line in lines:
        parts = line.rstrip().split(checker.delim)
        if checker.ufield < len(parts) and checker.pfield < len(parts):
            pairs.append((parts[checker.ufield], parts[checker.pfield]))
    return pairs


def _text(name: object) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return str(name)


def _bytes(password: object) -> bytes:
    if isinstance(password, bytes):
        return password
    return str(password).encode("utf-8")
