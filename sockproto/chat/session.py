# -*- test-case-name: tests.test_chat_behaviour -*-
"""
One user's chat, with no transport: the commands, nicknames and passwords,
rooms and the words the server says.  Every front end (lines, the web
page, IRC) decodes its wire into L{ChatSession.textReceived}, or calls the
session's methods (L{ChatSession.claimNick}, L{ChatSession.joinRoom}, ...)
for what its protocol says otherwise, and shows what the session tells its
L{IChatClient}; a new front end reuses all of it.
"""

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from ..logs import SafeLogger
from ..text import plural
from .accounts import Accounts
from .interfaces import (
    ChatError,
    IChatClient,
    IChatRoom,
    IChatServer,
    InvalidNickError,
    NickError,
    NickRegisteredError,
    PasswordError,
)
from .names import service_nick, valid_room

__all__ = ["ChatSession"]


class ChatSession:
    """
    One user in the chat.

    Over 300 lines, on purpose: it is the one place every front end's
    commands live (each C{command_NAME} is a short method a subclass may
    replace, as L{twisted.protocols.basic} keeps each event one method),
    with the nickname, password and room rules they share.

    To add a command, add a method C{command_NAME(self, argument)} whose
    docstring's first line is its help; the front end's L{IChatClient}
    shows what it says with L{notice} and L{error}.

    Every call to the back end returns a Deferred; a L{ChatError} in it is
    the answer to the user, anything else is logged and the user told the
    chat is unavailable.

    A user may be in several rooms at once (L{rooms}), as IRC users are;
    C{/join} on the line and web front ends moves the user from its rooms
    to another, so that those users are in one room at a time.

    @ivar nick: the user's nickname, once L{start} has one.
    @ivar room: the user's current room, if any: the one joined last.
    @ivar rooms: every room the user is in, by name.
    @ivar quitReason: what the room is told when the user leaves.
    @ivar wrongPasswords: wrong passwords given on this connection.
    """

    # Idle connections are most of a chat's memory: slots, and nothing kept
    # per session that its client already has.  (A subclass without slots
    # of its own gets a __dict__ for its attributes.)
    __slots__ = (
        "client",
        "server",
        "accounts",
        "nick",
        "room",
        "_rooms",
        "joined",
        "quitReason",
        "wrongPasswords",
        "_queue",
        "ended",
    )

    maxQueued = 64
    """Lines a user may type while a request of theirs is under way."""

    log = SafeLogger()

    def __init__(
        self,
        client: IChatClient,
        server: IChatServer,
        accounts: Optional[Accounts] = None,
    ) -> None:
        """
        @param client: the front end's side of this user: where the session
            shows what happens.  It is also the member the back end
            delivers to; its C{nick} is L{nick}.  Its C{peer} and
            C{peerKey}, if it has them, name the user's address in the log
            and for the per-address password limit.
        """
        self.client = client
        self.server = server
        self.accounts = accounts
        self.nick = ""
        self.room: Optional[IChatRoom] = None
        # Several rooms (IRC) only: one room is self.room alone, as most
        # users are, and a dict per idle user would cost ~180 bytes.
        self._rooms: Optional[Dict[str, IChatRoom]] = None
        self.joined = False
        self.quitReason = "connection lost"
        self.wrongPasswords = 0
        self._queue: Optional[Deque[str]] = None
        self.ended = False

    @property
    def rooms(self) -> Dict[str, IChatRoom]:
        """
        Every room the user is in, by name (a copy when there is one).
        """
        if self._rooms is not None:
            return self._rooms
        room = self.room
        return {room.name: room} if room is not None else {}

    @property
    def peer(self) -> str:
        """The user's address, for the log."""
        return str(getattr(self.client, "peer", ""))

    @property
    def peerKey(self) -> Optional[str]:
        """What the per-address password limit counts."""
        return getattr(self.client, "peerKey", None)

    # --- life -------------------------------------------------------------

    def start(self, enter: bool = True) -> "Deferred[None]":
        """
        Join the chat: a guest nickname, the welcome and the default room;
        with C{enter} false (IRC, whose users choose their rooms and are
        greeted with numerics), only the nickname.
        """
        self._queue = deque()  # what the user types meanwhile waits
        d = self.server.register(self.client)
        d.addCallback(self._registered, enter)
        return self.answer(d).addBoth(self._nextLine)

    def _registered(self, nick: str, enter: bool) -> Optional["Deferred[None]"]:
        self.nick = nick
        if self.ended:  # gone while the back end answered
            self._logFailure(self.server.unregister(self.client))
            return None
        self.joined = True
        if not enter:
            return None
        self.welcome()
        return self.server.room(self.server.defaultRoom).addCallback(self.enter)

    def welcome(self) -> None:
        """
        Called once the user has a nickname: greet them.
        """
        server = self.server
        self.notice(f"Welcome to {server.name}, {self.nick}. Type /help for commands.")

    def end(self) -> None:
        """
        The user is gone: free the nickname, leave the room (with
        L{quitReason}).  Nothing more is shown.
        """
        self.ended = True
        self._queue = None
        if not self.joined:
            return
        self.joined = False
        self._logFailure(self.server.unregister(self.client))
        self.leaveAll(self.quitReason, quitting=True)

    # --- input ------------------------------------------------------------

    def textReceived(self, text: str) -> None:
        """
        Called with each non-blank line the user typed, decoded and
        cleaned.  Lines are handled in order: while a request to the back
        end is under way (a new nickname, a room), the next lines wait.
        """
        if self._queue is None:
            d = self._handleLine(text)
            if isinstance(d, Deferred) and not d.called:
                self._queue = deque()  # until it is answered
                d.addBoth(self._nextLine)
        elif len(self._queue) < self.maxQueued:
            self._queue.append(text)
        else:
            self.error("too many lines while the chat answers: slow down")

    def _nextLine(self, result: object) -> object:
        queue = self._queue
        while queue:
            d = self._handleLine(queue.popleft())
            if isinstance(d, Deferred) and not d.called:
                d.addBoth(self._nextLine)
                return result
        self._queue = None
        return result

    def _handleLine(self, text: str) -> Optional["Deferred[Any]"]:
        # Whatever a line does, the lines after it are handled: a bug in
        # one command costs the user that command's answer, not the chat.
        try:
            return self.lineReceived(text)
        except Exception as e:
            self.log.error(
                "chat: a line from {peer} failed: {error}",
                peer=self.peer,
                error=f"{type(e).__name__}: {e}",
            )
            self.error("that failed on the server, sorry: try again later")
            return None

    def lineReceived(self, text: str) -> Optional["Deferred[Any]"]:
        """
        Handle one line: a command, or a line for the room.

        @return: a Deferred while a request is under way, else None.
        """
        if text.startswith("/") and not text.startswith("//"):
            name, _, argument = text[1:].partition(" ")
            return self.commandReceived(name.lower(), argument.strip())
        return self.say(text[1:] if text.startswith("//") else text)

    def commandReceived(self, name: str, argument: str) -> Optional["Deferred[Any]"]:
        """
        Called with each command: runs C{command_NAME(argument)}.
        """
        method = self.command(name)
        if method is None:
            self.log.info(
                "chat: {peer} unknown command {name!r}", peer=self.peer, name=name
            )
            self.error(f"unknown command /{name} (try /help)")
            return None
        try:
            result = method(argument)
        except ChatError as e:
            self.error(str(e))
            return None
        if isinstance(result, Deferred):
            return self.answer(result)
        return None

    def command(self, name: str) -> Optional[Callable[[str], Any]]:
        """
        The method for command C{/name}, or None.
        """
        if not name.isidentifier():
            return None
        method = getattr(self, "command_" + name, None)
        if method is None:  # a command of this front end alone
            method = getattr(self.client, "command_" + name, None)
        return method  # type: ignore[no-any-return]

    def say(self, text: str) -> Optional["Deferred[Any]"]:
        """
        Called with each line for the room.
        """
        if self.room is None:
            return None
        return self.answer(self.room.say(self.client, text))

    def act(self, text: str) -> None:
        """
        Show an action of the user in the room, as C{/me} does.
        """
        if self.room is not None:
            self.answer(self.room.act(self.client, text))

    # --- output -----------------------------------------------------------

    def notice(self, text: str) -> None:
        """
        Tell the user C{text}.
        """
        self.client.notice(text)

    def error(self, text: str) -> None:
        """
        Tell the user what went wrong.
        """
        self.client.error(text)

    def answer(self, d: "Deferred[Any]") -> "Deferred[Any]":
        """
        Show a L{ChatError} from C{d} to the user; log anything else (and
        tell the user the chat is unavailable).  For front ends whose
        requests go to the back end without the session.
        """
        return d.addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        if failure.check(ChatError):
            self.error(failure.getErrorMessage())
            return
        self.log.failure("chat: a request of {peer} failed", failure, peer=self.peer)
        self.error("the chat is unavailable right now, try again later")

    def _logFailure(self, d: "Deferred[Any]") -> None:
        d.addErrback(
            lambda f: self.log.failure("chat: leaving for {peer}", f, peer=self.peer)
        )

    # --- commands ---------------------------------------------------------

    def command_help(self, argument: str) -> None:
        """/help: list the commands."""
        names = {n for n in dir(self) + dir(self.client) if n.startswith("command_")}
        for name in sorted(names):
            method = self.command(name[len("command_") :])
            doc = (getattr(method, "__doc__", None) or "").strip().splitlines()
            self.notice(doc[0] if doc else "/" + name[len("command_") :])
        self.notice("//TEXT: say a line that starts with /, as /TEXT")

    def command_nick(self, argument: str) -> "Deferred[bool]":
        """/nick NAME [PASSWORD]: change nickname (a registered one needs it)."""
        nick, _, password = argument.partition(" ")
        password = password.strip()
        if not nick:
            raise ChatError("usage: /nick NAME [PASSWORD]")
        if nick == self.nick:
            raise ChatError(f"you are {nick} already")
        return self.claimNick(nick, password or None)

    def claimNick(self, nick: str, password: Optional[str] = None) -> "Deferred[bool]":
        """
        Take C{nick}; a registered one needs its C{password}.

        @return: a Deferred that fires with True once C{nick} is the
            user's, or False when a password attempt failed (the user was
            told, and the attempt counted: past the limit, the connection
            is closed); it fails with a L{NickError} saying why C{nick}
            cannot be had (invalid, the server's own, taken, registered).
        """
        if service_nick(nick):
            return fail(
                InvalidNickError(f"nickname {nick} is the server's own: choose another")
            )
        accounts = self.accounts
        account = accounts.registeredName(nick) if accounts is not None else None
        if account is None:
            if password:
                return fail(
                    NickError(f"nickname {nick} is not registered: /nick {nick}")
                )
            return self.changeNick(nick).addCallback(lambda _: True)
        if not password:
            if account.lower() == nick.lower():
                why = f"nickname {nick} is registered: /nick {nick} PASSWORD"
            else:
                why = f"nickname {nick} looks like registered {account}: choose another"
            return fail(NickRegisteredError(why))
        d = self.checkPassword(account, password)
        d.addCallback(self._checked, nick)
        return d

    def checkPassword(self, account: str, password: str) -> "Deferred[bool]":
        """
        Whether C{password} is registered nickname C{account}'s.  A wrong
        one counts against this connection and its address (L{wrongGuess});
        while the address has guessed wrong too often, the Deferred fails
        with a L{PasswordError} without checking.
        """
        accounts = self.accounts
        assert accounts is not None
        if not accounts.mayGuess(self.peerKey):
            self.log.warn(
                "chat: {peer} tried a password for {nick} too soon after too"
                " many wrong ones from its address",
                peer=self.peer,
                nick=account,
            )
            return fail(
                PasswordError("too many wrong passwords from your address: try later")
            )

        def checked(right: bool) -> bool:
            if not right:
                self.log.warn(
                    "chat: wrong password for {nick} from {peer}",
                    nick=account,
                    peer=self.peer,
                )
                self.wrongGuess()
            return right

        return accounts.check(account, password).addCallback(checked)

    def wrongGuess(self) -> None:
        """
        Count a failed password attempt against this connection and its
        address.
        """
        accounts = self.accounts
        assert accounts is not None
        accounts.wrongGuess(self.peerKey)
        self.wrongPasswords += 1

    @property
    def guessesLeft(self) -> bool:
        """Whether this connection may try another password."""
        accounts = self.accounts
        limit = accounts.maxWrongPerConnection if accounts is not None else 0
        return self.wrongPasswords < limit

    def _checked(self, right: bool, nick: str) -> "Deferred[bool]":
        d = self.server.inUse(nick)
        d.addCallback(self.passwordChecked, right, nick)
        return d

    def passwordChecked(self, inUse: bool, right: bool, nick: str) -> "Deferred[bool]":
        """
        Called once the password for registered nickname C{nick} is
        checked.  While someone else uses it, every password, the right one
        too, gets "taken" and counts as a failed attempt, so that the answer
        tells a guesser nothing.
        """
        if not self.joined:
            return succeed(False)
        taken = inUse and nick.lower() != self.nick.lower()
        if right and not taken:
            return self.changeNick(nick).addCallback(lambda _: True)
        if right:
            self.log.warn(
                "chat: {peer} gave the right password for {nick}, which is in"
                " use: refused",
                peer=self.peer,
                nick=nick,
            )
            self.wrongGuess()
        taken_or_wrong = "nickname {} is taken" if taken else "wrong password for {}"
        self.failedAttempt(taken_or_wrong.format(nick))
        return succeed(False)

    def failedAttempt(self, answer: str) -> None:
        """
        Called after a password attempt that did not get the nickname (and
        was counted): answer; past L{Accounts.maxWrongPerConnection} on this
        connection, disconnect.
        """
        if self.guessesLeft:
            return self.error(answer)
        self.log.warn(
            "chat: {peer} gave {count} wrong passwords: disconnecting",
            peer=self.peer,
            count=self.wrongPasswords,
        )
        self.quitReason = "too many wrong passwords"
        self.error(answer + "; too many wrong passwords: disconnecting")
        self.client.close()

    def changeNick(self, nick: str) -> "Deferred[None]":
        """
        Take C{nick}, if it is valid and free; the back end announces it.
        """
        if service_nick(nick):
            return fail(
                ChatError(f"nickname {nick} is the server's own: choose another")
            )
        old = self.nick
        d = self.server.rename(self.client, nick)

        def renamed(_: None) -> None:
            self.nick = nick
            self.log.info(
                "chat: {peer} {old} is now {new}", peer=self.peer, old=old, new=nick
            )

        return d.addCallback(renamed)

    def command_me(self, argument: str) -> None:
        """/me ACTION: show an action, as in '* alice waves'."""
        if not argument:
            raise ChatError("usage: /me ACTION")
        self.act(argument)

    maxWhoShown = 100
    """How many nicknames C{/who} lists."""

    def command_who(self, argument: str) -> Optional["Deferred[None]"]:
        """/who [ROOM]: list who is in your room (or in ROOM, one of yours)."""
        room = self.room
        if argument:
            name = valid_room(argument)
            room = self.rooms.get(name) if name is not None else None
            if room is None:
                raise ChatError(f"you are not in {argument}")
        if room is None:
            return None

        def show(nicks: List[str]) -> None:
            limit = self.maxWhoShown
            shown = ", ".join(nicks[:limit])
            more = f" and {len(nicks) - limit} more" if len(nicks) > limit else ""
            self.notice(f"in #{room.name} ({len(nicks)}): {shown}{more}")

        return room.nicks().addCallback(show)

    def command_msg(self, argument: str) -> "Deferred[None]":
        """/msg NICK TEXT: send a private message."""
        nick, _, text = argument.partition(" ")
        text = text.strip()
        if not nick or not text:
            raise ChatError("usage: /msg NICK TEXT")

        def sent(event: Any) -> None:
            if event.target.lower() != self.nick.lower():
                self.client.receive(event)  # as the recipient got it

        return self.server.tell(self.client, nick, text).addCallback(sent)

    def command_join(self, argument: str) -> "Deferred[None]":
        """/join ROOM: leave your room for #ROOM, created if needed."""
        name = valid_room(argument)
        if name is None:
            raise ChatError("usage: /join ROOM (1 to 32 ASCII letters, digits, _ or -)")
        if self.room is not None and name == self.room.name:
            raise ChatError(f"you are already in #{name}")

        def move(room: IChatRoom) -> "Deferred[None]":
            self.leaveRoom(f"joined #{name}")
            return self.enter(room)

        return self.server.room(name).addCallback(move)

    def command_part(self, argument: str) -> "Deferred[None]":
        """/part: go back to the default room."""
        default = self.server.defaultRoom
        if self.room is not None and self.room.name == default:
            raise ChatError(f"you are in #{default} already; /quit leaves the chat")

        def move(room: IChatRoom) -> "Deferred[None]":
            self.leaveRoom(argument or f"back to #{default}")
            return self.enter(room)

        return self.server.room(default).addCallback(move)

    maxRoomsShown = 50
    """How many rooms C{/rooms} lists, the most crowded first."""

    def command_rooms(self, argument: str) -> "Deferred[None]":
        """/rooms: list the rooms, the most crowded first."""

        def show(rooms: List[Any]) -> None:
            rooms = sorted(rooms, key=lambda room: -room[1])
            limit = self.maxRoomsShown
            shown = ", ".join(f"#{name} ({count})" for name, count in rooms[:limit])
            more = f" and {len(rooms) - limit} more" if len(rooms) > limit else ""
            self.notice(f"rooms ({len(rooms)}): {shown}{more}")

        return self.server.rooms().addCallback(show)

    def command_quit(self, argument: str) -> None:
        """/quit [REASON]: leave the chat."""
        self.quitReason = argument or "quit"
        self.notice("bye")
        self.client.close()

    # --- rooms ------------------------------------------------------------

    maxNicksOnEntering = 20
    """How many of the people in a room are named on entering it."""

    def enter(self, room: IChatRoom) -> "Deferred[None]":
        """
        Join C{room}: show who is there, then its recent history.

        Who is there is asked once joined, so that a change meanwhile (a
        nickname, an arrival) is either in the answer or delivered after.
        """
        if self.ended:  # gone while the back end answered
            return succeed(None)
        if self._rooms is not None:
            self._rooms[room.name] = room
        self.room = room

        def greet(nicks: List[str], history: List[Any]) -> None:
            if self.ended:
                return
            others = [nick for nick in nicks if nick != self.client.nick]
            limit = self.maxNicksOnEntering
            shown = ", ".join(others[:limit]) + (" ..." if len(others) > limit else "")
            where = f"you are in #{room.name}"
            self.notice(where + (f" with {shown}" if others else ", alone"))
            if history:
                self.client.history(room.name, history)

        def joined(history: List[Any]) -> "Deferred[None]":
            return room.nicks().addCallback(greet, history)

        return room.join(self.client).addCallback(joined)

    def joinRoom(self, name: str) -> "Deferred[Optional[IChatRoom]]":
        """
        Join room C{name} too, keeping the others (IRC's C{JOIN}), and show
        its recent history; fires with the room, or None if the user was in
        it already (or left meanwhile).  Nothing else is said: the front
        end says the user joined, its own way.
        """
        if name in self.rooms:
            return succeed(None)

        def entered(room: IChatRoom) -> "Deferred[Optional[IChatRoom]]":
            if self.ended or name in self.rooms:
                return succeed(None)
            if self._rooms is None:
                self._rooms = self.rooms
            self._rooms[name] = self.room = room
            return room.join(self.client).addCallback(showHistory, room)

        def showHistory(history: List[Any], room: IChatRoom) -> IChatRoom:
            if history and not self.ended:
                self.client.history(room.name, history)
            return room

        return self.server.room(name).addCallback(entered)

    def leave(self, name: str, reason: str, quitting: bool = False) -> bool:
        """
        Leave room C{name} with C{reason}; False if the user is not in it.
        C{quitting}: because the user leaves the chat (a quit).
        """
        if self._rooms is not None:
            room = self._rooms.pop(name, None)
        else:
            room = (
                self.room if self.room is not None and self.room.name == name else None
            )
        if room is None:
            return False
        if self.room is room:
            rest = list(self._rooms.values()) if self._rooms is not None else []
            self.room = rest[-1] if rest else None
        # A back end written before quit() existed leaves instead.
        goodbye = getattr(room, "quit", room.leave) if quitting else room.leave
        self._logFailure(goodbye(self.client, reason))
        return True

    def sayIn(
        self, name: str, text: str, action: bool = False, notice: bool = False
    ) -> bool:
        """
        Say C{text} (or act it, as C{/me}; or send it as a notice, which
        nobody answers) in room C{name}; False if the user is not in it.
        """
        room = self.rooms.get(name)
        if room is None:
            return False
        say = room.act if action else room.say
        if notice:  # a back end written before notice() existed says it
            say = getattr(room, "notice", room.say)
        self.answer(say(self.client, text))
        return True

    def leaveAll(self, reason: str, quitting: bool = False) -> None:
        """
        Leave every room the user is in, with C{reason} (C{quitting}: see
        L{leave}).
        """
        for name in list(self.rooms):
            self.leave(name, reason, quitting)

    def leaveRoom(self, reason: str) -> None:
        """
        Leave the user's rooms with C{reason}, before moving to another
        (C{/join}, C{/part}).
        """
        self.leaveAll(reason)

    @staticmethod
    def lastLines(count: int, room: str) -> str:
        """
        The words before the history shown on entering C{room}.
        """
        return f"last {plural(count, 'line')} of #{room}:"
