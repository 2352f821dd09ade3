# -*- test-case-name: tests.test_chat_irc -*-
"""
The IRC commands the front end answers, each declared once, as Ergo's
C{irc/commands.go} does: how many parameters it needs, and whether it may
come before registration.  L{dispatch} checks both in one place (451, 461,
421) before a handler runs, so no handler counts its parameters.
"""

from typing import Any, Dict, List, NamedTuple, Optional

from twisted.words.protocols import irc

__all__ = ["COMMANDS", "Command", "dispatch"]


class Command(NamedTuple):
    """
    One IRC command: its handler is the C{irc_NAME} method of the
    protocol, or of the protocol's part named by C{on} (its
    C{registration}, its C{channels}).

    @ivar minParams: the parameters it needs (non-empty ones); fewer get
        461 C{ERR_NEEDMOREPARAMS}.
    @ivar beforeRegistration: whether a client that has not registered
        may send it (else 451 C{ERR_NOTREGISTERED}).
    """

    minParams: int = 0
    beforeRegistration: bool = False
    on: str = ""


COMMANDS: Dict[str, Command] = {
    # registration (CAP, SASL, PASS, NICK, USER) and connection upkeep
    "CAP": Command(0, beforeRegistration=True, on="registration"),
    "AUTHENTICATE": Command(0, beforeRegistration=True, on="registration"),
    "PASS": Command(1, beforeRegistration=True, on="registration"),
    # 431 when missing: its own
    "NICK": Command(0, beforeRegistration=True, on="registration"),
    "USER": Command(4, beforeRegistration=True, on="registration"),
    "PING": Command(1, beforeRegistration=True),
    "PONG": Command(0, beforeRegistration=True),
    "QUIT": Command(0, beforeRegistration=True),
    # channels
    "JOIN": Command(1, on="channels"),
    "PART": Command(1, on="channels"),
    "NAMES": Command(0, on="channels"),
    "WHO": Command(0, on="channels"),
    "LIST": Command(0, on="channels"),
    "TOPIC": Command(1, on="channels"),
    "MODE": Command(1, on="channels"),
    "INVITE": Command(2, on="channels"),
    # talking and asking about people
    "PRIVMSG": Command(0),  # 411/412 and 461: its own
    "NOTICE": Command(0),  # never answered with an error
    "AWAY": Command(0),
    "WHOIS": Command(0, on="queries"),  # 431 when missing: its own
    "WHOWAS": Command(1, on="queries"),
    "USERHOST": Command(1, on="queries"),
    "ISON": Command(1, on="queries"),
    # asking about the server
    "LUSERS": Command(0, on="queries"),
    "TIME": Command(0, on="queries"),
    "MOTD": Command(0, on="queries"),
    "VERSION": Command(0, on="queries"),
    "INFO": Command(0, on="queries"),
    "ADMIN": Command(0, on="queries"),
    # what a server without operators answers
    "OPER": Command(2),
}


def dispatch(protocol: Any, command: str, params: List[str]) -> Any:
    """
    Run C{protocol}'s handler of C{command} with C{params}, or answer with
    the numeric that says why not.

    @return: what the handler returned: a Deferred if its reply waits for
        the back end (the protocol's next lines wait for it).
    """
    declared: Optional[Command] = COMMANDS.get(command)
    owner = getattr(protocol, declared.on) if declared and declared.on else protocol
    handler = getattr(owner, f"irc_{command}", None)
    if declared is None or handler is None:
        protocol.log.info(
            "irc: {peer} unknown command {command!r}",
            peer=protocol.peer,
            command=command,
        )
        if not protocol.registered:
            return protocol.numeric(irc.ERR_NOTREGISTERED, "You have not registered")
        return protocol.numeric(irc.ERR_UNKNOWNCOMMAND, command, "Unknown command")
    if not protocol.registered and not declared.beforeRegistration:
        return protocol.numeric(irc.ERR_NOTREGISTERED, "You have not registered")
    given = [p for p in params[: declared.minParams] if p]
    if len(given) < declared.minParams:
        return protocol.numeric(
            irc.ERR_NEEDMOREPARAMS, command, "Not enough parameters"
        )
    return handler(params)
