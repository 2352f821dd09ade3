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
    One IRC command: its handler is the protocol's C{irc_NAME} method.

    @ivar minParams: the parameters it needs (non-empty ones); fewer get
        461 C{ERR_NEEDMOREPARAMS}.
    @ivar beforeRegistration: whether a client that has not registered
        may send it (else 451 C{ERR_NOTREGISTERED}).
    """

    minParams: int = 0
    beforeRegistration: bool = False


COMMANDS: Dict[str, Command] = {
    # registration (CAP, SASL, PASS, NICK, USER) and connection upkeep
    "CAP": Command(0, beforeRegistration=True),
    "AUTHENTICATE": Command(0, beforeRegistration=True),
    "PASS": Command(1, beforeRegistration=True),
    "NICK": Command(0, beforeRegistration=True),  # 431 when missing: its own
    "USER": Command(4, beforeRegistration=True),
    "PING": Command(0, beforeRegistration=True),
    "PONG": Command(0, beforeRegistration=True),
    "QUIT": Command(0, beforeRegistration=True),
    # channels
    "JOIN": Command(1),
    "PART": Command(1),
    "NAMES": Command(0),
    "WHO": Command(0),
    "LIST": Command(0),
    "TOPIC": Command(1),
    "MODE": Command(1),
    # talking and asking about people
    "PRIVMSG": Command(0),  # 411/412 and 461: its own
    "NOTICE": Command(0),  # never answered with an error
    "AWAY": Command(0),
    "USERHOST": Command(1),
    "ISON": Command(1),
}


def dispatch(protocol: Any, command: str, params: List[str]) -> None:
    """
    Run C{protocol}'s handler of C{command} with C{params}, or answer with
    the numeric that says why not.
    """
    declared: Optional[Command] = COMMANDS.get(command)
    handler = getattr(protocol, f"irc_{command}", None)
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
    handler(params)
