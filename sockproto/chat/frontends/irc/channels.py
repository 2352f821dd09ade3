# -*- test-case-name: tests.test_chat_irc -*-
"""
The channel commands of the IRC front end: C{JOIN}, C{PART}, C{NAMES},
C{WHO}, C{LIST}, C{TOPIC}, C{MODE}; and what one connection may hold
(C{CHANLIMIT}, and the rooms its address made).

A channel is a room of the chat: joining one is the session's
L{ChatSession.joinRoom}, leaving it L{ChatSession.leave}.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure
from twisted.words.protocols import irc

from ....text import sanitize
from ...events import ChatEvent
from ...interfaces import ChatError, IChatRoom
from ...names import valid_nick, valid_room
from .render import CHANNEL_MODES, HOST, USER_MODES, irc_line, mask

if TYPE_CHECKING:  # pragma: no cover
    from .protocol import IrcChatProtocol

__all__ = ["Channels"]


class Channels:
    """
    The channels of one IRC connection.

    (Just over 300 lines: the seven channel commands and INVITE share the
    connection's channel count, the rooms its address made and the history
    held while a join is answered.)

    @ivar count: the channels it is in (or joining).
    @ivar made: the rooms it made (it was alone on joining), which count
        against its address while it is in them.
    @ivar entering: the rooms being joined, with the history the session
        gave for each: it is shown after C{JOIN} and C{NAMES}, as IRC
        clients expect (else they show it in the server's buffer).
    """

    def __init__(self, protocol: "IrcChatProtocol") -> None:
        self.protocol = protocol
        self.numeric = protocol.numeric
        self.sendIrc = protocol.sendIrc
        self.count = 0
        self.made: Set[str] = set()
        self.entering: Dict[str, List[Sequence[ChatEvent]]] = {}

    def releaseAll(self) -> None:
        """
        The connection is gone: its address no longer holds its rooms.
        """
        for name in list(self.made):
            self.leftChannel(name)

    def parse(self, param: str) -> List[Tuple[str, Optional[str]]]:
        """
        Each C{#room} of a comma-separated list, with its room name (None
        if it is not one).
        """
        result = []
        for channel in param.split(","):
            name = valid_room(channel) if channel.startswith("#") else None
            result.append((channel, name))
        return result

    def joined(self, name: Optional[str]) -> Optional[IChatRoom]:
        """
        Room C{name}, if the connection is in it.
        """
        session = self.protocol.session
        return session.rooms.get(name) if name and session is not None else None

    def irc_JOIN(self, params: List[str]) -> Optional["Deferred[Any]"]:
        if params[0] == "0":
            self.partAll()
            return None
        joins = []
        for channel, name in self.parse(params[0]):
            if name is None:
                self.numeric(irc.ERR_NOSUCHCHANNEL, channel, "No such channel")
            else:
                joins.append(self.joinChannel(name))
        return _all(joins)

    def joinChannel(self, name: str) -> Optional["Deferred[Any]"]:
        session = self.protocol.session
        assert session is not None
        if name in session.rooms:
            return None
        if self.count >= self.protocol.factory.maxChannels:
            self.numeric(
                irc.ERR_TOOMANYCHANNELS, f"#{name}", "You have joined too many channels"
            )
            return None
        self.count += 1  # counted while the back end answers
        self.entering[name] = []
        d = session.joinRoom(name)

        def joined(room: Optional[IChatRoom]) -> Optional["Deferred[None]"]:
            if room is None:
                self.count -= 1
                self.entering.pop(name, None)
                return None
            return room.nicks().addCallback(entered, room)

        def entered(nicks: List[str], room: IChatRoom) -> None:
            alone = (
                nicks == [self.protocol.nick]
                and name != self.protocol.factory.server.defaultRoom
            )
            history = self.entering.pop(name, [])
            if alone and not self.created(name):
                self.count -= 1
                session.leave(name, "too many channels")
                return self.numeric(
                    irc.ERR_TOOMANYCHANNELS,
                    f"#{name}",
                    "Your address has created too many channels",
                )
            self.sendIrc(irc_line(mask(self.protocol.nick), "JOIN", f"#{name}"))
            self.sendNames(nicks, name)
            for events in history:
                self.protocol.sendHistory(name, events)

        def failed(failure: Failure) -> Failure:
            self.count -= 1
            self.entering.pop(name, None)
            return failure

        return session.answer(d.addCallbacks(joined, failed))

    def created(self, name: str) -> bool:
        """
        This connection made room C{name} (it was alone on joining it):
        count it against its address, unless the address made
        C{factory.maxChannelsPerPeer} rooms it is still in already
        (then False): one address cannot hold every room C{--max-rooms}
        allows.
        """
        factory, peer = self.protocol.factory, self.protocol.peerKey
        held = factory.chat.roomsHeld
        if held.get(peer, 0) >= factory.maxChannelsPerPeer:
            return False
        held[peer] = held.get(peer, 0) + 1
        self.made.add(name)
        return True

    def leftChannel(self, name: str) -> None:
        """
        This connection left room C{name}: it no longer counts, and no
        longer against its address if it made it.
        """
        self.count -= 1
        if name not in self.made:
            return
        self.made.discard(name)
        peer = self.protocol.peerKey
        held = self.protocol.factory.chat.roomsHeld
        if held.get(peer, 0) <= 1:
            held.pop(peer, None)
        else:
            held[peer] -= 1

    def sendNames(self, nicks: List[str], name: str) -> None:
        if "userhost-in-names" in self.protocol.caps:
            nicks = [mask(nick) for nick in nicks]
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
        for channel, name in self.parse(params[0]):
            self.partChannel(channel, name, reason)

    def partChannel(self, channel: str, name: Optional[str], reason: str) -> None:
        session = self.protocol.session
        assert session is not None
        if name is None or not session.leave(name, reason):
            return self.numeric(
                irc.ERR_NOTONCHANNEL, channel, "You're not on that channel"
            )
        self.leftChannel(name)
        self.sendIrc(irc_line(mask(self.protocol.nick), "PART", f"#{name}", reason))

    def partAll(self) -> None:
        assert self.protocol.session is not None
        for name in list(self.protocol.session.rooms):
            self.partChannel(f"#{name}", name, "left")

    def irc_NAMES(self, params: List[str]) -> Optional["Deferred[Any]"]:
        if not params:
            self.numeric(irc.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return None
        answers = []
        for channel, name in self.parse(params[0]):
            room = self.joined(name)
            if room is None or name is None:
                self.numeric(irc.RPL_ENDOFNAMES, channel, "End of /NAMES list")
            else:
                answers.append(room.nicks().addCallback(self.sendNames, name))
        return _all(answers)

    def irc_WHO(self, params: List[str]) -> Optional["Deferred[None]"]:
        """
        C{WHO #channel} (one the client is in) or C{WHO nick}: 352 for
        each, then 315.  Masks match nobody: the chat lists no one it was
        not asked about by name.
        """
        target = params[0] if params else "*"
        if not target.startswith("#"):
            if not valid_nick(target):
                self.numeric(irc.RPL_ENDOFWHO, target, "End of /WHO list")
                return None
            d = self.protocol.factory.server.inUse(target)
            return d.addCallback(
                lambda used: self.sendWho([target] if used else [], "*", target)
            )
        name = valid_room(target)
        room = self.joined(name)
        if room is None:
            self.numeric(irc.RPL_ENDOFWHO, target, "End of /WHO list")
            return None
        return room.nicks().addCallback(self.sendWho, f"#{name}", target)

    def sendWho(self, nicks: List[str], channel: str, target: str) -> None:
        away = self.protocol.queries.awayMessage
        for nick in nicks:
            self.numeric(
                irc.RPL_WHOREPLY,
                channel,
                nick,
                HOST,
                self.protocol.serverName,
                nick,
                "G" if away(nick) else "H",
                f"0 {nick}",
            )
        self.numeric(irc.RPL_ENDOFWHO, target, "End of /WHO list")

    def irc_INVITE(self, params: List[str]) -> Optional["Deferred[None]"]:
        """
        C{INVITE nick #channel}: rooms are open to all, so an invitation is
        a private notice to C{nick} (every front end shows it), and 341.
        """
        nick, channel = params[0], params[1]
        name = valid_room(channel) if channel.startswith("#") else None
        room = self.joined(name)
        if room is None:
            self.numeric(irc.ERR_NOTONCHANNEL, channel, "You're not on that channel")
            return None
        protocol = self.protocol

        def check(nicks: List[str]) -> Optional["Deferred[None]"]:
            if any(n.lower() == nick.lower() for n in nicks):
                self.numeric("443", nick, channel, "is already on channel")
                return None
            text = f"{protocol.nick} invites you to join {channel}"
            server = protocol.factory.server
            send = getattr(server, "notify", server.tell)
            return send(protocol, nick, text).addCallbacks(invited, failed)

        def invited(event: object) -> None:
            self.numeric(irc.RPL_INVITING, nick, channel)

        def failed(failure: Failure) -> None:
            failure.trap(ChatError)
            self.numeric(irc.ERR_NOSUCHNICK, nick, "No such nick/channel")

        return room.nicks().addCallback(check)

    def irc_LIST(self, params: List[str]) -> "Deferred[None]":
        def show(rooms: List[Tuple[str, int]]) -> None:
            self.numeric(irc.RPL_LISTSTART, "Channel", "Users  Name")
            for name, count in rooms:
                self.numeric(irc.RPL_LIST, f"#{name}", str(count), "")
            self.numeric(irc.RPL_LISTEND, "End of /LIST")

        return self.protocol.factory.server.rooms().addCallback(show)

    def irc_TOPIC(self, params: List[str]) -> Optional["Deferred[None]"]:
        channel = params[0]
        name = valid_room(channel) if channel.startswith("#") else None
        if len(params) > 1:
            self.numeric("482", channel, "Topics cannot be set here")
            return None
        if self.joined(name) is not None:
            self.numeric(irc.RPL_NOTOPIC, channel, "No topic is set")
            return None

        server = self.protocol.factory.server

        def answer(rooms: List[Tuple[str, int]]) -> None:
            if name is not None and (name == server.defaultRoom or name in dict(rooms)):
                self.numeric(irc.RPL_NOTOPIC, channel, "No topic is set")
            else:
                self.numeric(irc.ERR_NOSUCHCHANNEL, channel, "No such channel")

        return server.rooms().addCallback(answer)

    def irc_MODE(self, params: List[str]) -> None:
        target = params[0]
        change = params[1] if len(params) > 1 else ""
        if target.startswith("#"):
            if change in ("b", "+b", "e", "+e", "I", "+I"):
                ends = {"b": ("368", "ban"), "e": ("349", "exception")}
                code, what = ends.get(change[-1], ("347", "invite"))
                return self.numeric(code, target, f"End of channel {what} list")
            if not change:
                return self.numeric(irc.RPL_CHANNELMODEIS, target, f"+{CHANNEL_MODES}")
            return self.numeric(
                irc.ERR_CHANOPRIVSNEEDED,
                target,
                "You're not channel operator (there are none here)",
            )
        protocol = self.protocol
        if target.lower() != protocol.nick.lower():
            return self.numeric(
                irc.ERR_USERSDONTMATCH, "Cannot change mode for other users"
            )
        if not change:
            return self.numeric(irc.RPL_UMODEIS, "+" + "".join(sorted(protocol.modes)))
        if change.strip("+-") and not set(change.strip("+-")) <= set(USER_MODES):
            return self.numeric(irc.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        adding, changed = True, ""
        for letter in change:
            if letter in "+-":
                adding = letter == "+"
            elif adding != (letter in protocol.modes):
                (protocol.modes.add if adding else protocol.modes.discard)(letter)
                changed += ("+" if adding else "-") + letter
        if changed:
            nick = protocol.nick
            protocol.sendIrc(irc_line(mask(nick), "MODE", nick, changed))


def _all(answers: Sequence[Optional["Deferred[Any]"]]) -> Optional["Deferred[Any]"]:
    """
    One Deferred for the C{answers} still to come (None if none).
    """
    waiting = [d for d in answers if d is not None and not d.called]
    if not waiting:
        return None
    return waiting[0] if len(waiting) == 1 else DeferredList(waiting)
