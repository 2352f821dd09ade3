# -*- test-case-name: tests.test_chat_irc -*-
"""
The IRC commands that ask about people and about the server: C{WHOIS},
C{WHOWAS}, C{USERHOST}, C{ISON}; C{LUSERS}, C{TIME}, C{MOTD}, C{VERSION},
C{INFO}, C{ADMIN}.  Bot libraries send several of them on their own (pydle
asks C{WHOIS} for every nickname it sees), so each is answered as RFC 2812
and the modern client protocol say, with what the chat knows.

A C{WHOIS} tells nothing a member could not see otherwise: the channels
listed are those the asker shares with the person (as with secret
channels), the host is the chat's, never an address.
"""

import time
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.words.protocols import irc

from .... import __version__
from ...names import valid_nick
from .render import HOST

if TYPE_CHECKING:  # pragma: no cover
    from .protocol import IrcChatProtocol

__all__ = ["Queries"]

MAX_TARGETS = 8
"""Nicknames one C{WHOIS} or C{WHOWAS} may ask about."""


class Queries:
    """
    The answers to one IRC connection's questions.
    """

    def __init__(self, protocol: "IrcChatProtocol") -> None:
        self.protocol = protocol
        self.numeric = protocol.numeric

    # --- people -----------------------------------------------------------

    def irc_WHOIS(self, params: List[str]) -> Optional["Deferred[Any]"]:
        # "WHOIS server nick" names a server first: there is one.
        nicks = [n for n in (params[-1] if params else "").split(",") if n]
        nicks = nicks[:MAX_TARGETS]
        if not nicks:
            self.numeric(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
            return None
        answers = [self.whois(nick) for nick in nicks]
        waiting = [d for d in answers if not d.called]
        return DeferredList(waiting) if waiting else None

    def whois(self, nick: str) -> "Deferred[None]":
        """
        Answer C{WHOIS nick}: 311, 319, 312, 301, 330, then 318; or 401.
        """
        if not valid_nick(nick):
            self.noSuchNick(nick)
            return succeed(None)
        d = self.protocol.factory.server.inUse(nick)

        def found(used: bool) -> Optional["Deferred[None]"]:
            if not used:
                self.noSuchNick(nick)
                return None
            return self.sharedChannels(nick).addCallback(show)

        def show(channels: List[str]) -> None:
            protocol = self.protocol
            self.numeric(irc.RPL_WHOISUSER, nick, nick, HOST, "*", nick)
            if channels:
                self.numeric(irc.RPL_WHOISCHANNELS, nick, " ".join(channels))
            self.numeric(irc.RPL_WHOISSERVER, nick, protocol.serverName, "sockproto")
            away = self.awayMessage(nick)
            if away:
                self.numeric(irc.RPL_AWAY, nick, away)
            accounts = protocol.factory.accounts
            account = accounts.registeredName(nick) if accounts is not None else None
            if account is not None:  # held, so logged in with its password
                self.numeric("330", nick, account, "is logged in as")
            self.numeric(irc.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")

        return d.addCallback(found)

    def noSuchNick(self, nick: str) -> None:
        self.numeric(irc.ERR_NOSUCHNICK, nick, "No such nick/channel")
        self.numeric(irc.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")

    def sharedChannels(self, nick: str) -> "Deferred[List[str]]":
        """
        The channels C{nick} is in that the asker is in too.
        """
        session = self.protocol.session
        rooms = list(session.rooms.items()) if session is not None else []
        lowered = nick.lower()

        def member(nicks: List[str]) -> bool:
            return any(n.lower() == lowered for n in nicks)

        checks = [room.nicks().addCallback(member) for _, room in rooms]
        d = gatherResults(checks, consumeErrors=True)
        return d.addCallback(
            lambda shared: [f"#{name}" for (name, _), s in zip(rooms, shared) if s]
        )

    def awayMessage(self, nick: str) -> str:
        """
        C{nick}'s away message, if it is an IRC user of this process that
        set one (C{AWAY}).
        """
        find = getattr(self.protocol.factory.server, "find", None)
        member = find(nick) if find is not None else None
        return str(getattr(member, "away", "") or "")

    def irc_WHOWAS(self, params: List[str]) -> None:
        # Nicknames are not remembered once given up (nothing is kept about
        # people who left): every one was never here, as far as we tell.
        for nick in [n for n in params[0].split(",") if n][:MAX_TARGETS]:
            self.numeric(irc.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
            self.numeric(irc.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")

    def irc_USERHOST(self, params: List[str]) -> "Deferred[None]":
        away = self.awayMessage
        return self.present(params[:5]).addCallback(
            lambda nicks: self.numeric(
                irc.RPL_USERHOST,
                " ".join(f"{n}={'-' if away(n) else '+'}{n}@{HOST}" for n in nicks),
            )
        )

    def irc_ISON(self, params: List[str]) -> "Deferred[None]":
        nicks = " ".join(params).split()[:32]
        return self.present(nicks).addCallback(
            lambda found: self.numeric(irc.RPL_ISON, " ".join(found))
        )

    def present(self, nicks: Sequence[str]) -> "Deferred[List[str]]":
        """
        Those of C{nicks} someone uses now.
        """
        server = self.protocol.factory.server
        checks = [server.inUse(n) if valid_nick(n) else succeed(False) for n in nicks]
        d = gatherResults(checks, consumeErrors=True)
        return d.addCallback(lambda used: [n for n, u in zip(nicks, used) if u])

    # --- the server -------------------------------------------------------

    def irc_LUSERS(self, params: List[str]) -> "Deferred[None]":
        server = self.protocol.factory.server
        members = int(server.counts().get("members", 0))

        def show(rooms: List[Any]) -> None:
            self.numeric(
                irc.RPL_LUSERCLIENT,
                f"There are {members} users and 0 invisible on 1 servers",
            )
            self.numeric(irc.RPL_LUSERCHANNELS, str(len(rooms)), "channels formed")
            self.numeric(irc.RPL_LUSERME, f"I have {members} clients and 1 servers")

        return server.rooms().addCallback(show)

    def irc_TIME(self, params: List[str]) -> None:
        now = time.strftime("%A %B %d %Y -- %H:%M:%S +00:00", time.gmtime())
        self.numeric(irc.RPL_TIME, self.protocol.serverName, now)

    def irc_MOTD(self, params: List[str]) -> None:
        room = self.protocol.factory.server.defaultRoom
        self.numeric(irc.ERR_NOMOTD, f"No MOTD: join #{room} to meet the others")

    def irc_VERSION(self, params: List[str]) -> None:
        self.numeric(
            irc.RPL_VERSION,
            f"sockproto-{__version__}.",
            self.protocol.serverName,
            "a Twisted chat: line, web and IRC clients in the same rooms",
        )
        self.protocol.registration.isupport()

    def irc_INFO(self, params: List[str]) -> None:
        info = f"sockproto {__version__}: a Twisted protocol toolkit and its chat"
        self.numeric(irc.RPL_INFO, info)
        self.numeric(irc.RPL_ENDOFINFO, "End of /INFO list")

    def irc_ADMIN(self, params: List[str]) -> None:
        self.numeric(
            irc.ERR_NOADMININFO,
            self.protocol.serverName,
            "No administrative info available",
        )
