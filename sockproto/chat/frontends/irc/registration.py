# -*- test-case-name: tests.test_chat_irc -*-
"""
An IRC connection's registration, and its nickname after: C{CAP}
negotiation (IRCv3 302), SASL PLAIN, C{PASS}, C{NICK} and C{USER}, the
deadline to finish them, the lines held meanwhile, and the welcome
(001 to 005, 422).

The connection (L{IrcChatProtocol}) owns one L{Registration}; the command
table sends these commands here.  The nickname and password rules are the
session's (L{ChatSession.claimNick}, L{ChatSession.checkPassword}): this
module only turns their answers into IRC's numerics.
"""

import base64
from typing import TYPE_CHECKING, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.words.protocols import irc

from .... import __version__
from ...interfaces import (
    ChatError,
    InvalidNickError,
    NickInUseError,
    NickRegisteredError,
    PasswordError,
)
from ...names import valid_nick
from .render import (
    CHANNEL_MODES,
    MAX_NICK,
    MAX_ROOM,
    TAG_CAPS,
    USER_MODES,
    irc_line,
    mask,
)

if TYPE_CHECKING:  # pragma: no cover
    from .protocol import IrcChatProtocol

__all__ = ["Registration"]

SASL_CHUNK = 400
"""Bytes of base64 in one C{AUTHENTICATE} (IRCv3): a full one means more."""
MAX_SASL = 4 * SASL_CHUNK
"""Bytes of base64 a whole SASL PLAIN payload may have."""


class Registration:
    """
    The registration state of one IRC connection.  Until it is L{done}
    (C{NICK} and C{USER}, after C{CAP END} if the client negotiates), only
    registration commands are answered; while the back end answers, the
    client's next lines wait (L{LineProtocol.waitFor}).

    (Over 300 lines: CAP, SASL and NICK/USER are one state machine, each
    step depending on the others' state — SASL on CAP, the welcome on all
    three — and splitting it would pass that state between objects.)

    @ivar done: whether the client is registered (welcomed).
    @ivar caps: the IRCv3 capabilities the client enabled (C{CAP REQ}).
    @ivar authenticated: whether SASL succeeded (once is all).
    @ivar password: from C{PASS} or SASL: the password of a registered
        nickname, used when the nickname is claimed.
    """

    def __init__(self, protocol: "IrcChatProtocol") -> None:
        self.protocol = protocol
        self.done = False
        self.caps: Set[str] = set()
        self.wantedNick = ""
        self.user = ""
        self.password = ""
        self._negotiating = False
        self._sasl = False
        self._started = False
        self._payload: Optional[str] = None
        self.authenticated = False
        self._timer: Optional[IDelayedCall] = protocol.callLater(
            protocol.factory.registrationTimeout, self.timedOut
        )

    def timedOut(self) -> None:
        """
        Called when the client has not registered in
        C{factory.registrationTimeout} seconds, whatever it sent (a PING
        does not extend it): close.
        """
        self._timer = None
        if self.done:
            return
        protocol = self.protocol
        protocol.log.info("irc: {peer} did not register in time", peer=protocol.peer)
        closing = "Closing link: registration timed out"
        protocol.sendIrc(irc_line(None, "ERROR", closing))
        protocol.closeConnection()

    def stop(self) -> None:
        """
        The connection is gone: stop the deadline.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # --- CAP and SASL -----------------------------------------------------

    def capabilities(self, values: bool) -> Dict[str, str]:
        """
        The IRCv3 capabilities offered, by name, with their values (given
        only to a client that asked with C{CAP LS 302}).
        """
        # cap-notify: the list never changes, so there is nothing to notify;
        # multi-prefix: there are no channel prefixes, so nothing to add.
        offered = dict.fromkeys(
            [
                "batch",
                "cap-notify",
                "echo-message",
                "multi-prefix",
                "server-time",
                "userhost-in-names",
            ],
            "",
        )
        if self.protocol.factory.accounts is not None:
            offered["account-tag"] = ""
            offered["sasl"] = "PLAIN" if values else ""
        return offered

    def irc_CAP(self, params: List[str]) -> Optional["Deferred[None]"]:
        protocol = self.protocol
        sub = params[0].upper() if params else ""
        if sub == "LS":
            self._negotiating = not self.done
            values = len(params) > 1 and params[1].isdigit() and int(params[1]) >= 302
            listed = " ".join(
                f"{name}={value}" if value else name
                for name, value in sorted(self.capabilities(values).items())
            )
            self.cap("LS", listed)
        elif sub == "LIST":
            enabled = " ".join(sorted(self.caps))
            self.cap("LIST", enabled)
        elif sub == "REQ":
            self.requestCapabilities(params[1] if len(params) > 1 else "")
        elif sub == "END":
            self._negotiating = False
            return self.maybeRegister()
        else:
            protocol.numeric("410", sub or "*", "Invalid CAP command")
        return None

    def requestCapabilities(self, wanted: str) -> None:
        """
        C{CAP REQ}: enable (or, with C{-}, disable) every capability of
        C{wanted}, or none if one of them cannot be (RFC: all or nothing).
        """
        offered = self.capabilities(False)
        changes: List[Tuple[str, bool]] = []
        for word in wanted.lower().split():
            name = word[1:] if word.startswith("-") else word
            if name not in offered or (name == "sasl" and self.done):
                changes = []
                break
            changes.append((name, not word.startswith("-")))
        if not changes:
            self.cap("NAK", wanted)
            return
        for name, on in changes:
            if on:
                self.caps.add(name)
            else:
                self.caps.discard(name)
        self._sasl = "sasl" in self.caps
        self.protocol.tags = frozenset(self.caps & TAG_CAPS)
        if self._sasl and not self.done:
            self._negotiating = True
        self.cap("ACK", wanted)

    def cap(self, sub: str, text: str) -> None:
        """
        Answer C{CAP} with C{sub} (C{LS}, C{ACK}, ...) and C{text}.
        """
        protocol = self.protocol
        protocol.sendIrc(
            irc_line(protocol.serverName, "CAP", protocol.shownNick, sub, text)
        )

    def irc_AUTHENTICATE(self, params: List[str]) -> None:
        """
        SASL PLAIN (once C{CAP REQ :sasl} is acknowledged): the password of
        a registered nickname, checked now, used on registering.  The
        payload may come in 400-byte pieces (IRCv3: a shorter piece, or
        C{+}, ends it).
        """
        numeric = self.protocol.numeric
        if self.authenticated:
            return numeric("907", "You have already authenticated using SASL")
        if self.done:
            return numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        if not self._sasl:
            return numeric("904", "SASL authentication failed")
        if not params or not params[0]:
            return
        word = params[0]
        if word == "*":
            self._payload = None
            return numeric("906", "SASL authentication aborted")
        if self._payload is None:  # the mechanism
            if word.upper() != "PLAIN":
                numeric("908", "PLAIN", "are available SASL mechanisms")
                return numeric("904", "SASL authentication failed")
            self._payload = ""
            return self.protocol.sendIrc(irc_line(None, "AUTHENTICATE", "+"))
        if len(word) > SASL_CHUNK or len(self._payload) + len(word) > MAX_SASL:
            self._payload = None
            return numeric("905", "SASL message too long")
        if word != "+":
            self._payload += word
            if len(word) == SASL_CHUNK:
                return  # more to come
        payload, self._payload = self._payload, None
        try:
            fields = base64.b64decode(payload, validate=True).split(b"\0")
            _, name, password = (f.decode("utf-8") for f in fields)
        except (ValueError, UnicodeDecodeError):
            return self.saslFailed()
        self.checkSasl(name, password)

    def checkSasl(self, name: str, password: str) -> None:
        protocol = self.protocol
        session = protocol.session
        accounts = protocol.factory.accounts
        assert session is not None and accounts is not None
        account = accounts.registeredName(name)
        if account is None:
            session.wrongGuess()  # guessing names is guessing too
            return self.saslFailed()

        def checked(right: bool) -> None:
            if not right:
                return self.saslFailed()
            self.password = password
            self.authenticated = True
            protocol.numeric(
                "900", mask(account), account, f"You are now logged in as {account}"
            )
            protocol.numeric("903", "SASL authentication successful")

        def refused(failure: Failure) -> None:
            failure.trap(PasswordError)
            self.saslFailed()

        session.checkPassword(account, password).addCallbacks(checked, refused)

    def saslFailed(self) -> None:
        """
        A SASL attempt failed (904); past the accounts' C{maxWrongPerConnection}
        on this connection, as on every front end, disconnect.
        """
        protocol = self.protocol
        protocol.numeric("904", "SASL authentication failed")
        session = protocol.session
        assert session is not None
        if not session.guessesLeft:
            protocol.log.warn(
                "irc: {peer} failed SASL {count} times: disconnecting",
                peer=protocol.peer,
                count=session.wrongPasswords,
            )
            protocol.quit("too many wrong passwords")
            protocol.sendIrc(
                irc_line(None, "ERROR", "Closing link: too many wrong passwords")
            )
            protocol.closeConnection()

    # --- PASS, USER, NICK -------------------------------------------------

    def irc_PASS(self, params: List[str]) -> None:
        if self.done:
            return self.protocol.numeric(
                irc.ERR_ALREADYREGISTRED, "You may not reregister"
            )
        self.password = params[0]

    def irc_USER(self, params: List[str]) -> Optional["Deferred[None]"]:
        if self.done:
            self.protocol.numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
            return None
        self.user = params[0]
        return self.maybeRegister()

    def irc_NICK(self, params: List[str]) -> Optional["Deferred[None]"]:
        protocol = self.protocol
        if not params or not params[0]:
            protocol.numeric(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
            return None
        nick = params[0]
        if not valid_nick(nick):
            protocol.numeric(irc.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
            return None
        if not self.done:
            self.wantedNick = nick
            return self.maybeRegister()
        if nick == protocol.nick:
            return None
        old = protocol.nick
        d = self.takeNick(nick)
        return d.addCallback(
            lambda taken: protocol.renamed(old, nick) if taken else None
        )

    def maybeRegister(self) -> Optional["Deferred[None]"]:
        """
        Register, if the client said all it must: the lines it sends
        meanwhile wait (the Deferred returned) until it is done.
        """
        if self.done or self._negotiating or not (self.wantedNick and self.user):
            return None
        protocol = self.protocol
        session = protocol.session
        assert session is not None
        if not self._started:
            self._started = True
            d = session.start(enter=False).addCallback(lambda _: self.claimWantedNick())
        else:
            d = self.claimWantedNick()
        return d.addErrback(
            lambda f: protocol.log.failure(
                "irc: registering {peer}", f, peer=protocol.peer
            )
        )

    def claimWantedNick(self) -> "Deferred[None]":
        nick = self.wantedNick
        session = self.protocol.session
        if session is None or not session.joined or not nick:
            return succeed(None)
        if nick == session.nick:
            return self.welcome()
        d = self.takeNick(nick)
        return d.addCallback(lambda taken: self.welcome() if taken else None)

    def takeNick(self, nick: str) -> "Deferred[bool]":
        """
        Ask the chat for C{nick} (with the password of C{PASS} or SASL, if
        it is registered); fires with whether it was granted (if not, the
        client was told why).
        """
        session = self.protocol.session
        assert session is not None
        accounts = session.accounts
        registered = accounts is not None and accounts.registeredName(nick) is not None
        d = session.claimNick(nick, self.password if registered else None)
        return d.addErrback(self.nickRefused, nick)

    def nickRefused(self, failure: Failure, nick: str) -> bool:
        """
        The chat refused C{nick}: say why, with IRC's numerics.
        """
        failure.trap(ChatError)
        numeric = self.protocol.numeric
        if failure.check(InvalidNickError):
            numeric(irc.ERR_ERRONEUSNICKNAME, nick, failure.getErrorMessage())
        elif failure.check(NickRegisteredError):
            numeric(
                irc.ERR_NICKNAMEINUSE,
                nick,
                "Nickname is registered: connect with its password (PASS)",
            )
        elif failure.check(NickInUseError):
            numeric(irc.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        else:
            self.protocol.error(failure.getErrorMessage())
        return False

    # --- the welcome ------------------------------------------------------

    def isupport(self) -> None:
        """
        Say what this server supports (005), as on registering and after
        C{VERSION}.
        """
        protocol = self.protocol
        protocol.numeric(
            irc.RPL_ISUPPORT,
            "CHANTYPES=#",
            f"NICKLEN={MAX_NICK}",
            f"CHANNELLEN={MAX_ROOM + 1}",
            "CASEMAPPING=ascii",
            "PREFIX=",
            f"CHANMODES=,,,{CHANNEL_MODES}",
            f"CHANLIMIT=#:{protocol.factory.maxChannels}",
            f"NETWORK={protocol.serverName}",
            "are supported by this server",
        )

    def welcome(self) -> "Deferred[None]":
        """
        Registered: 001 to 005, the user counts (251, 254, 255: as
        C{LUSERS}), then 422 (no MOTD).
        """
        self.done = True
        self.stop()
        protocol = self.protocol
        protocol.registered = True
        factory = protocol.factory
        numeric = protocol.numeric
        nick = protocol.nick
        server = factory.server
        name = protocol.serverName
        numeric(irc.RPL_WELCOME, f"Welcome to {server.name}, {mask(nick)}")
        numeric(irc.RPL_YOURHOST, f"Your host is {name}, running sockproto")
        numeric(irc.RPL_CREATED, "This server speaks IRC to sockproto's chat")
        numeric(irc.RPL_MYINFO, name, __version__, USER_MODES, CHANNEL_MODES)
        self.isupport()
        protocol.log.info(
            "irc: {peer} registered as {nick}", peer=protocol.peer, nick=nick
        )
        d = protocol.queries.irc_LUSERS([])
        return d.addCallback(lambda _: protocol.queries.irc_MOTD([]))
