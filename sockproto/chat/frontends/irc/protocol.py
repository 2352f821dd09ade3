# -*- test-case-name: tests.test_chat_irc -*-
"""
The chat's IRC front end: irssi, WeeChat, HexChat or an IRC bot connect as
to an IRC server, into the same rooms as the line and web clients (a room
is a channel: C{#lobby}).

An IRC user may be in several rooms at once: its L{ChatSession} joins each
room it asks for as the same member (the back end delivers each room's
events to it, named by room), and says a line in the room its C{PRIVMSG}
names.  Commands that are not IRC's (C{/rooms}) still work through
C{PRIVMSG} to the server's own nickname.

Lines are parsed with L{twisted.words.protocols.irc.parsemsg} and CTCP with
L{ctcpExtract}; they arrive through the line protocol's machinery (512
bytes, rate limit, bounded output), as the line protocol's do.
"""

import base64
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.words.protocols import irc
from zope.interface import implementer

from .... import __version__
from ....text import sanitize
from ...events import ACTION, MESSAGE, NICK, ChatEvent, EventBatch
from ...interfaces import (
    ChatError,
    IChatClient,
    IChatRoom,
    InvalidNickError,
    NickInUseError,
    NickRegisteredError,
    PasswordError,
)
from ...names import valid_nick, valid_room
from ...session import ChatSession
from ..base import FrontEndFactory, FrontEndProtocol
from .commands import dispatch
from .render import HOST, MAX_NICK, MAX_ROOM, SERVER, format_event, irc_line, mask

__all__ = ["IrcChatFactory", "IrcChatProtocol", "IrcSession", "irc_line"]

IrcSession = ChatSession
"""Deprecated: every front end's session is a L{ChatSession} now, which may be
in several rooms at once."""


@implementer(IChatClient)
class IrcChatProtocol(FrontEndProtocol):
    """
    One IRC client.  Until it has registered (C{NICK} and C{USER}, after
    C{CAP END} if it negotiates), only registration commands are answered.

    Over 300 lines: the commands are declared in L{commands} and written by
    L{render}, but registration (CAP, SASL, PASS, NICK, USER and their
    state) still lives here; it is the next piece to move into an object of
    its own (docs/architecture.md, "still to do").
    """

    factory: "IrcChatFactory"
    registered = False
    session: Optional[ChatSession] = None
    _started = False
    wantedNick = ""
    user = ""
    password = ""
    away = ""
    _negotiating = False
    _pinged = False
    _held: Optional[List[bytes]] = None
    _sasl = False
    caps: Set[str] = frozenset()  # type: ignore[assignment]
    """The IRCv3 capabilities the client enabled (C{CAP REQ})."""
    _registrationCall: Optional[IDelayedCall] = None
    maxHeld = 32
    """Lines a client may send while its registration is under way."""

    def connectionReady(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self._seenNicks: Deque[Tuple[str, str]] = deque(maxlen=16)
        self.caps = set()
        # Made now, started on registering: SASL counts its guesses.
        self.session = self.factory.buildSession(self)
        self._registrationCall = self.callLater(
            self.factory.registrationTimeout, self.registrationTimedOut
        )

    def registrationTimedOut(self) -> None:
        """
        Called when the client has not registered in
        C{factory.registrationTimeout} seconds, whatever it sent (a PING
        does not extend it): close.
        """
        self._registrationCall = None
        if self.registered:
            return
        self.log.info("irc: {peer} did not register in time", peer=self.peer)
        self.sendIrc(irc_line(None, "ERROR", "Closing link: registration timed out"))
        self.closeConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if self._registrationCall is not None and self._registrationCall.active():
            self._registrationCall.cancel()
        self._registrationCall = None
        for name in list(self._created or ()):
            self.leftChannel(name)
        super().connectionLost(reason)

    @property
    def nick(self) -> str:
        return self.session.nick if self.session is not None else ""

    @property
    def shownNick(self) -> str:
        """The nickname the client knows it by: C{*} until registered."""
        return self.nick if self.registered else "*"

    # --- input ------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        self._pinged = False
        if self._held is not None:  # registering: in order, once done
            if len(self._held) < self.maxHeld:
                self._held.append(line)
            return
        text = line.decode("utf-8", "replace").strip("\r\n ")
        if not text:
            return
        try:
            prefix, command, params = irc.parsemsg(text)
        except (ValueError, IndexError, irc.IRCBadMessage):
            return self.numeric(irc.ERR_UNKNOWNCOMMAND, "*", "Malformed message")
        dispatch(self, command.upper(), params)

    # registration

    def capabilities(self, values: bool) -> Dict[str, str]:
        """
        The IRCv3 capabilities offered, by name, with their values (given
        only to a client that asked with C{CAP LS 302}).
        """
        offered = {"echo-message": ""}
        if self.factory.accounts is not None:
            offered["sasl"] = "PLAIN" if values else ""
        return offered

    def irc_CAP(self, params: List[str]) -> None:
        sub = params[0].upper() if params else ""
        if sub == "LS":
            self._negotiating = not self.registered
            values = len(params) > 1 and params[1].isdigit() and int(params[1]) >= 302
            listed = " ".join(
                f"{name}={value}" if value else name
                for name, value in sorted(self.capabilities(values).items())
            )
            self.sendIrc(irc_line(SERVER, "CAP", self.shownNick, "LS", listed))
        elif sub == "LIST":
            enabled = " ".join(sorted(self.caps))
            self.sendIrc(irc_line(SERVER, "CAP", self.shownNick, "LIST", enabled))
        elif sub == "REQ":
            wanted = params[1] if len(params) > 1 else ""
            self.requestCapabilities(wanted)
        elif sub == "END":
            self._negotiating = False
            self.maybeRegister()
        else:
            self.numeric("410", sub or "*", "Invalid CAP command")

    def requestCapabilities(self, wanted: str) -> None:
        """
        C{CAP REQ}: enable (or, with C{-}, disable) every capability of
        C{wanted}, or none if one of them cannot be (RFC: all or nothing).
        """
        offered = self.capabilities(False)
        changes: List[Tuple[str, bool]] = []
        for word in wanted.lower().split():
            name = word[1:] if word.startswith("-") else word
            if name not in offered or (name == "sasl" and self.registered):
                changes = []
                break
            changes.append((name, not word.startswith("-")))
        if not changes:
            self.sendIrc(irc_line(SERVER, "CAP", self.shownNick, "NAK", wanted))
            return
        for name, on in changes:
            if on:
                self.caps.add(name)
            else:
                self.caps.discard(name)
        self._sasl = "sasl" in self.caps
        if self._sasl and not self.registered:
            self._negotiating = True
        self.sendIrc(irc_line(SERVER, "CAP", self.shownNick, "ACK", wanted))

    def irc_AUTHENTICATE(self, params: List[str]) -> None:
        """
        SASL PLAIN (once C{CAP REQ :sasl} is acknowledged): the password of
        a registered nickname, checked now, used on registering.
        """
        if not self._sasl or self.registered:
            return self.numeric("904", "SASL authentication failed")
        if not params:
            return
        if params[0].upper() == "PLAIN":
            return self.sendIrc(irc_line(None, "AUTHENTICATE", "+"))
        if params[0] == "*":
            return self.numeric("906", "SASL authentication aborted")
        try:
            fields = base64.b64decode(params[0], validate=True).split(b"\0")
            _, name, password = (f.decode("utf-8") for f in fields)
        except (ValueError, UnicodeDecodeError):
            return self.numeric("904", "SASL authentication failed")
        self.checkSasl(name, password)

    def checkSasl(self, name: str, password: str) -> None:
        session = self.session
        assert session is not None and self.factory.accounts is not None
        account = self.factory.accounts.registeredName(name)
        if account is None:
            session.wrongGuess()  # guessing names is guessing too
            return self.saslFailed()

        def checked(right: bool) -> None:
            if not right:
                return self.saslFailed()
            self.password = password
            self.numeric(
                "900", mask(account), account, f"You are now logged in as {account}"
            )
            self.numeric("903", "SASL authentication successful")

        def refused(failure: Failure) -> None:
            failure.trap(PasswordError)
            self.saslFailed()

        session.checkPassword(account, password).addCallbacks(checked, refused)

    def saslFailed(self) -> None:
        """
        A SASL attempt failed (904); past the accounts' C{maxWrongPerConnection}
        on this connection, as on every front end, disconnect.
        """
        self.numeric("904", "SASL authentication failed")
        session = self.session
        assert session is not None
        if not session.guessesLeft:
            self.log.warn(
                "irc: {peer} failed SASL {count} times: disconnecting",
                peer=self.peer,
                count=session.wrongPasswords,
            )
            self.quit("too many wrong passwords")
            self.sendIrc(
                irc_line(None, "ERROR", "Closing link: too many wrong passwords")
            )
            self.closeConnection()

    def irc_PASS(self, params: List[str]) -> None:
        if self.registered:
            return self.numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        self.password = params[0]

    def irc_USER(self, params: List[str]) -> None:
        if self.registered:
            return self.numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        self.user = params[0]
        self.maybeRegister()

    def irc_NICK(self, params: List[str]) -> None:
        if not params or not params[0]:
            return self.numeric(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
        nick = params[0]
        if not valid_nick(nick):
            return self.numeric(irc.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
        if not self.registered:
            self.wantedNick = nick
            return self.maybeRegister()
        if nick == self.nick:
            return
        old = self.nick
        d = self.takeNick(nick)
        d.addCallback(lambda taken: self.renamed(old, nick) if taken else None)

    def maybeRegister(self) -> None:
        if self.registered or self._negotiating or not (self.wantedNick and self.user):
            return
        self._held = []
        session = self.session
        assert session is not None
        if not self._started:
            self._started = True
            d = session.start(enter=False).addCallback(lambda _: self.claimWantedNick())
        else:
            d = self.claimWantedNick()
        d.addBoth(self.release)
        d.addErrback(
            lambda f: self.log.failure("irc: registering {peer}", f, peer=self.peer)
        )

    def claimWantedNick(self) -> "Deferred[None]":
        nick = self.wantedNick
        if self.session is None or not self.session.joined or not nick:
            return succeed(None)
        if nick == self.nick:
            self.welcome()
            return succeed(None)
        d = self.takeNick(nick)
        return d.addCallback(lambda taken: self.welcome() if taken else None)

    def release(self, result: object) -> object:
        """
        Registration is done (or refused): handle the lines that came
        meanwhile, in order.
        """
        held, self._held = self._held or [], None
        while held and self.connected:
            if self._held is not None:  # registering again (another NICK)
                self._held.extend(held)
                break
            self.lineReceived(held.pop(0))
        return result

    def takeNick(self, nick: str) -> "Deferred[bool]":
        """
        Ask the chat for C{nick} (with the password of C{PASS} or SASL, if
        it is registered); fires with whether it was granted (if not, the
        client was told why).
        """
        session = self.session
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
        why = failure.getErrorMessage()
        if failure.check(InvalidNickError):
            self.numeric(irc.ERR_ERRONEUSNICKNAME, nick, why)
        elif failure.check(NickRegisteredError):
            self.numeric(
                irc.ERR_NICKNAMEINUSE,
                nick,
                "Nickname is registered: connect with its password (PASS)",
            )
        elif failure.check(NickInUseError):
            self.numeric(irc.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        else:
            self.error(why)
        return False

    def welcome(self) -> None:
        self.registered = True
        if self._registrationCall is not None and self._registrationCall.active():
            self._registrationCall.cancel()
        self._registrationCall = None
        nick = self.nick
        server = self.factory.server
        self.numeric(irc.RPL_WELCOME, f"Welcome to {server.name}, {mask(nick)}")
        self.numeric(irc.RPL_YOURHOST, f"Your host is {SERVER}, running sockproto")
        self.numeric(irc.RPL_CREATED, "This server speaks IRC to sockproto's chat")
        self.numeric(irc.RPL_MYINFO, SERVER, __version__, "i", "")
        self.numeric(
            irc.RPL_ISUPPORT,
            "CHANTYPES=#",
            f"NICKLEN={MAX_NICK}",
            f"CHANNELLEN={MAX_ROOM + 1}",
            "CASEMAPPING=ascii",
            "PREFIX=",
            "CHANMODES=,,,",
            f"CHANLIMIT=#:{self.factory.maxChannels}",
            f"NETWORK={SERVER}",
            "are supported by this server",
        )
        self.numeric(
            irc.ERR_NOMOTD,
            f"No MOTD: join #{server.defaultRoom} to meet the others",
        )
        self.log.info("irc: {peer} registered as {nick}", peer=self.peer, nick=nick)

    def renamed(self, old: str, new: str) -> None:
        """
        Tell the client it is now C{new}: its rooms announce it, and say
        so here if it is in none.
        """
        assert self.session is not None
        if not self.session.rooms:
            self._seenNicks.append((old, new))
            self.sendIrc(irc_line(mask(old), "NICK", new))

    # connection upkeep

    def irc_PING(self, params: List[str]) -> None:
        self.sendIrc(irc_line(SERVER, "PONG", SERVER, params[0] if params else SERVER))

    def irc_PONG(self, params: List[str]) -> None:
        pass  # any line counts: lineReceived cleared the ping

    def irc_QUIT(self, params: List[str]) -> None:
        self.quit(f"Quit: {sanitize(params[0])}" if params else "Quit")
        self.sendIrc(irc_line(None, "ERROR", "Closing link: quit"))
        self.closeConnection()

    def timeoutConnection(self) -> None:
        """
        Silent for the idle time: ping it once; silent for that long
        again, drop it.
        """
        if self.registered and not self._pinged:
            self._pinged = True
            self.sendIrc(irc_line(None, "PING", SERVER))
            self.setTimeout(self.factory.timeout)
            return
        self.quit("Ping timeout")
        self.sendIrc(irc_line(None, "ERROR", "Closing link: ping timeout"))
        super().timeoutConnection()

    # channels

    def channels(self, param: str) -> List[Tuple[str, Optional[str]]]:
        """
        Each C{#room} of a comma-separated list, with its room name (None
        if it is not one).
        """
        result = []
        for channel in param.split(","):
            name = valid_room(channel) if channel.startswith("#") else None
            result.append((channel, name))
        return result

    def irc_JOIN(self, params: List[str]) -> None:
        if params[0] == "0":
            return self.partAll()
        for channel, name in self.channels(params[0]):
            if name is None:
                self.numeric(irc.ERR_NOSUCHCHANNEL, channel, "No such channel")
            else:
                self.joinChannel(name)

    def joinChannel(self, name: str) -> None:
        session = self.session
        assert session is not None
        if name in session.rooms:
            return
        if self._channels >= self.factory.maxChannels:
            return self.numeric(
                irc.ERR_TOOMANYCHANNELS, f"#{name}", "You have joined too many channels"
            )
        self._channels += 1  # counted while the back end answers
        d = session.joinRoom(name)

        def joined(room: Optional[IChatRoom]) -> Optional["Deferred[None]"]:
            if room is None:
                self._channels -= 1
                return None
            return room.nicks().addCallback(entered, room)

        def entered(nicks: List[str], room: IChatRoom) -> None:
            alone = nicks == [self.nick] and name != self.factory.server.defaultRoom
            if alone and not self.created(name):
                self._channels -= 1
                session.leave(name, "too many channels")
                return self.numeric(
                    irc.ERR_TOOMANYCHANNELS,
                    f"#{name}",
                    "Your address has created too many channels",
                )
            self.sendIrc(irc_line(mask(self.nick), "JOIN", f"#{name}"))
            self.sendNames(nicks, name)

        def failed(failure: Failure) -> Failure:
            self._channels -= 1
            return failure

        session._answer(d.addCallbacks(joined, failed))

    _channels = 0
    _created: Optional[Set[str]] = None

    def created(self, name: str) -> bool:
        """
        This connection made room C{name} (it was alone on joining it):
        count it against its address, unless the address made
        L{IrcChatFactory.maxChannelsPerPeer} rooms it is still in already
        (then False): one address cannot hold every room C{--max-rooms}
        allows.
        """
        held = self.factory.chat.roomsHeld
        if held.get(self.peerKey, 0) >= self.factory.maxChannelsPerPeer:
            return False
        held[self.peerKey] = held.get(self.peerKey, 0) + 1
        if self._created is None:
            self._created = set()
        self._created.add(name)
        return True

    def leftChannel(self, name: str) -> None:
        """
        This connection left room C{name}: it no longer counts, and no
        longer against its address if it made it.
        """
        self._channels -= 1
        if self._created is None or name not in self._created:
            return
        self._created.discard(name)
        held = self.factory.chat.roomsHeld
        if held.get(self.peerKey, 0) <= 1:
            held.pop(self.peerKey, None)
        else:
            held[self.peerKey] -= 1

    def sendNames(self, nicks: List[str], name: str) -> None:
        line = ""
        for nick in nicks:
            if len(line) + len(nick) > 400:
                self.numeric(irc.RPL_NAMREPLY, "=", f"#{name}", line)
                line = ""
            line = f"{line} {nick}" if line else nick
        if line:
            self.numeric(irc.RPL_NAMREPLY, "=", f"#{name}", line)
        self.numeric(irc.RPL_ENDOFNAMES, f"#{name}", "End of /NAMES list")

    def irc_PART(self, params: List[str]) -> None:
        reason = sanitize(params[1]) if len(params) > 1 else "left"
        for channel, name in self.channels(params[0]):
            self.partChannel(channel, name, reason)

    def partChannel(self, channel: str, name: Optional[str], reason: str) -> None:
        session = self.session
        assert session is not None
        if name is None or not session.leave(name, reason):
            return self.numeric(
                irc.ERR_NOTONCHANNEL, channel, "You're not on that channel"
            )
        self.leftChannel(name)
        self.sendIrc(irc_line(mask(self.nick), "PART", f"#{name}", reason))

    def partAll(self) -> None:
        assert self.session is not None
        for name in list(self.session.rooms):
            self.partChannel(f"#{name}", name, "left")

    def irc_NAMES(self, params: List[str]) -> None:
        if not params:
            return self.numeric(irc.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        for channel, name in self.channels(params[0]):
            room = self.session.rooms.get(name) if name and self.session else None
            if room is None or name is None:
                self.numeric(irc.RPL_ENDOFNAMES, channel, "End of /NAMES list")
            else:
                room.nicks().addCallback(self.sendNames, name)

    def irc_WHO(self, params: List[str]) -> None:
        target = params[0] if params else "*"
        name = valid_room(target) if target.startswith("#") else None
        room = self.session.rooms.get(name) if name and self.session else None
        if room is None:
            return self.numeric(irc.RPL_ENDOFWHO, target, "End of /WHO list")

        def show(nicks: List[str]) -> None:
            for nick in nicks:
                self.numeric(
                    irc.RPL_WHOREPLY,
                    f"#{name}",
                    nick,
                    HOST,
                    SERVER,
                    nick,
                    "G" if nick == self.nick and self.away else "H",
                    f"0 {nick}",
                )
            self.numeric(irc.RPL_ENDOFWHO, target, "End of /WHO list")

        room.nicks().addCallback(show)

    def irc_LIST(self, params: List[str]) -> None:
        def show(rooms: List[Tuple[str, int]]) -> None:
            self.numeric(irc.RPL_LISTSTART, "Channel", "Users  Name")
            for name, count in rooms:
                self.numeric(irc.RPL_LIST, f"#{name}", str(count), "")
            self.numeric(irc.RPL_LISTEND, "End of /LIST")

        self.factory.server.rooms().addCallback(show)

    def irc_TOPIC(self, params: List[str]) -> None:
        if len(params) > 1:
            return self.numeric("482", params[0], "Topics cannot be set here")
        self.numeric(irc.RPL_NOTOPIC, params[0], "No topic is set")

    def irc_MODE(self, params: List[str]) -> None:
        target = params[0]
        if target.startswith("#"):
            if len(params) > 1 and params[1] in ("b", "+b"):
                return self.numeric("368", target, "End of channel ban list")
            return self.numeric(irc.RPL_CHANNELMODEIS, target, "+")
        if target.lower() == self.nick.lower():
            return self.numeric(irc.RPL_UMODEIS, "+")
        self.numeric(irc.ERR_USERSDONTMATCH, "Cannot change mode for other users")

    # talking

    def irc_PRIVMSG(self, params: List[str], notice: bool = False) -> None:
        command = "NOTICE" if notice else "PRIVMSG"
        if len(params) < 2 or not params[1]:
            if not notice:
                self.numeric(irc.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
            return
        target, text = params[0], params[1]
        action = False
        if text.startswith(irc.X_DELIM):
            tag, data = (irc.ctcpExtract(text)["extended"] or [("", "")])[0]
            if tag != "ACTION":
                return  # other CTCPs (VERSION, ...) are not relayed
            action, text = True, data or ""
        text = sanitize(text).strip()
        if not text:
            return
        session = self.session
        assert session is not None
        if target.startswith("#"):
            name = valid_room(target)
            if name is None or not session.sayIn(name, text, action):
                if not notice:
                    self.numeric("404", target, "Cannot send to channel (join it)")
            return
        if target.lower() == SERVER:
            session.textReceived(text if text.startswith("/") else "/" + text)
            return
        self.tell(target, f"* {self.nick} {text}" if action else text, notice)

    def irc_NOTICE(self, params: List[str]) -> None:
        self.irc_PRIVMSG(params, notice=True)

    def tell(self, nick: str, text: str, quiet: bool) -> None:
        session = self.session
        assert session is not None
        d = self.factory.server.tell(self, nick, text)

        def sent(event: ChatEvent) -> None:
            if "echo-message" in self.caps and event.target != self.nick:
                self.direct(self.renderEvents([event]))

        d.addCallback(sent)

        def failed(failure: Failure) -> None:
            failure.trap(ChatError)
            if not quiet:
                self.numeric(irc.ERR_NOSUCHNICK, nick, "No such nick/channel")

        session._answer(d.addErrback(failed))

    def irc_AWAY(self, params: List[str]) -> None:
        self.away = sanitize(params[0]) if params and params[0] else ""
        if self.away:
            self.numeric(irc.RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.numeric(irc.RPL_UNAWAY, "You are no longer marked as being away")

    def irc_USERHOST(self, params: List[str]) -> None:
        self.present(params[:5]).addCallback(
            lambda nicks: self.numeric(
                irc.RPL_USERHOST, " ".join(f"{n}=+{n}@{HOST}" for n in nicks)
            )
        )

    def irc_ISON(self, params: List[str]) -> None:
        nicks = " ".join(params).split()[:32]
        self.present(nicks).addCallback(
            lambda found: self.numeric(irc.RPL_ISON, " ".join(found))
        )

    def present(self, nicks: Sequence[str]) -> "Deferred[List[str]]":
        """
        Those of C{nicks} someone uses now.
        """
        server = self.factory.server
        checks = [server.inUse(n) if valid_nick(n) else succeed(False) for n in nicks]
        d = gatherResults(checks, consumeErrors=True)
        return d.addCallback(lambda used: [n for n, u in zip(nicks, used) if u])

    # --- output -----------------------------------------------------------

    def sendIrc(self, line: str) -> None:
        self.writeOut((line + "\r\n").encode("utf-8"))

    def numeric(self, code: str, *params: str) -> None:
        self.sendIrc(irc_line(SERVER, code, self.shownNick, *params))

    def deliver(self, batch: EventBatch) -> None:
        if self.transport.disconnecting or not self.registered:
            return
        nick = self.nick
        pieces = batch.each(type(self), self.renderOne)
        # Its own events are not echoed, and each client shows a nickname
        # change once, whichever of its rooms it came from: those batches
        # are put together for each client, from events formatted once.
        if nick in batch.senders or NICK in batch.kinds:
            echo = "echo-message" in self.caps
            self.writeOut(self.renderOthers(batch, pieces, nick, echo))
        else:
            self.writeOut(batch.rendered(type(self), lambda _: b"".join(pieces)))

    def renderOthers(
        self, batch: EventBatch, pieces: Sequence[bytes], nick: str, echo: bool
    ) -> bytes:
        """
        C{batch} for the client of C{nick}, from its events formatted once
        for all the clients (C{pieces}): the events of the others (in a busy
        room, most members are senders of each batch; formatting the batch
        again for each of them made the cost grow with the square of the
        room).  Nickname changes are formatted for each client, which shows
        each change once, whichever rooms it came from.  With C{echo}
        (echo-message), its own lines and actions are there too.
        """
        return b"".join(
            [
                self.renderEvents([e]) if e.kind == NICK else p
                for e, p in zip(batch.events, pieces)
                if e.kind == NICK
                or e.nick != nick
                or (echo and e.kind in (MESSAGE, ACTION))
            ]
        )

    def renderOne(self, event: ChatEvent) -> bytes:
        """
        One event, but for a nickname change, as one IRC message.
        """
        return b"" if event.kind == NICK else self.renderEvents([event])

    def receive(self, event: ChatEvent) -> None:
        # Its own copy of what it sent comes only with echo-message.
        if event.nick != self.nick or (
            "echo-message" in self.caps and event.target != self.nick
        ):
            self.direct(self.renderEvents([event]))

    def renderEvents(self, events: Sequence[ChatEvent]) -> bytes:
        """
        C{events} as IRC messages.
        """
        lines = [self.formatIrc(event) for event in events]
        return "".join(line + "\r\n" for line in lines if line).encode("utf-8")

    def formatIrc(self, event: ChatEvent) -> str:
        """
        One event as one IRC message (a nickname change once per client).
        """
        if event.kind == NICK:
            return self.nickLine(event)
        return format_event(event)

    def nickLine(self, event: ChatEvent) -> str:
        change = (event.nick, event.text)
        if change in self._seenNicks:  # the same change, from another room
            return ""
        self._seenNicks.append(change)
        return irc_line(mask(event.nick), "NICK", event.text)

    def history(self, room: str, events: Sequence[ChatEvent]) -> None:
        lines = [f"last {len(events)} lines of #{room}:"]
        for event in events:
            if event.kind == MESSAGE:
                lines.append(f"<{event.nick}> {event.text}")
            elif event.kind == ACTION:
                lines.append(f"* {event.nick} {event.text}")
        for line in lines:
            self.sendIrc(irc_line(SERVER, "NOTICE", f"#{room}", line))

    def notice(self, text: str) -> None:
        self.sendIrc(irc_line(SERVER, "NOTICE", self.shownNick, text))

    def error(self, text: str) -> None:
        self.notice("error: " + text)

    def nickChanged(self, nick: str, reason: str) -> None:
        old = self.nick
        super().nickChanged(nick, reason)
        self._seenNicks.append((old, nick))
        self.sendIrc(irc_line(mask(old), "NICK", nick))

    def shutdownConnection(self) -> None:
        if self.session is not None:
            self.session.quitReason = "server shutting down"
        self.sendIrc(irc_line(None, "ERROR", "Closing link: server shutting down"))
        self.closeConnection()

    def close(self) -> None:
        self.sendIrc(irc_line(None, "ERROR", "Closing link"))
        super().close()

    def lineTooLong(self, length: int) -> None:
        self.logTooLong("line", length, "bytes")
        self.numeric("417", "Input line was too long")


class IrcChatFactory(FrontEndFactory):
    """
    The IRC port of a chat: serves L{IrcChatProtocol}, in the rooms of
    C{chat}, with its limits; idle clients are pinged after
    L{pingInterval} seconds, and dropped after as long again.
    """

    protocol = IrcChatProtocol  # type: ignore[assignment]
    serviceName = "irc"
    fullMessage = b"ERROR :Closing link: server full, try again later\r\n"
    perPeerMessage = b"ERROR :Closing link: too many connections from your address\r\n"
    notTLSMessage = b"ERROR :Closing link: this port speaks TLS\r\n"
    plainMessage = b"ERROR :Closing link: this port does not speak TLS\r\n"
    pingInterval = 120.0
    registrationTimeout = 60.0
    """Seconds a client has to register (NICK and USER, CAP END)."""
    maxChannels = 20
    """Channels one connection may be in at once (CHANLIMIT)."""
    maxChannelsPerPeer = 64
    """Rooms the connections of one address may have created and still be
    in, all together (joining rooms others made does not count): one
    address cannot hold every room C{--max-rooms} allows."""

    def __init__(self, chat: Any) -> None:
        # 512 bytes with the CRLF (RFC 2812 2.3): 510, and the CR counts.
        super().__init__(chat, maxLineLength=511, timeout=self.pingInterval)
