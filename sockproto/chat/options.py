# -*- test-case-name: tests.test_chat_accounts,tests.test_service -*-
"""
The options of C{twistd sockproto chat}, with their defaults from
L{ChatFactory}.
"""

import socket
from typing import Any, Dict, List, Optional

from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.task import Clock
from twisted.python import usage

from ..options import (
    ServiceOptions,
    check_endpoint,
    count,
    describe_error,
    rate,
    seconds,
    timeout_option,
)
from ..server import ServiceFactory, default_reactor
from .accounts import Accounts, UnsupportedCheckerError
from .backends.redis.resp import (
    RedisAddress,
    RedisLink,
    parse_redis_url,
    read_password_file,
)
from .backends.redis.server import RedisChatServer
from .frontends.irc.protocol import IrcChatFactory
from .frontends.irc.render import SERVER as IRC_SERVER
from .frontends.irc.render import SERVER_NAME_RULE
from .frontends.irc.render import valid_server_name as valid_irc_server_name
from .frontends.line import ChatFactory
from .frontends.web.http import host_name
from .frontends.web.protocol import WebChatFactory
from .interfaces import IChatServer

__all__ = ["ChatOptions"]


class ChatOptions(ServiceOptions, strcred.AuthOptionMixin):
    """
    Options of the chat service.
    """

    serviceName = "chat"
    defaultEndpoint = "tcp:12347"
    otherPortDefaults = {
        "web": ("tcp:12348", "the chat's web page"),
        "irc": ("tcp:6667", "the chat over IRC"),
    }
    description = "Run only chat: a multi-user line chat for telnet and nc."
    longdesc = (
        "A multi-user line chat for telnet, nc and 'sockproto chat'."
        " Default: tcp:12347. Registered nicknames: --auth file:PATH, a file"
        " of NAME:PASSWORD lines, read again when it changes (or on SIGHUP);"
        " --auth memory:NAME:PASSWORD also works, but every local user can"
        " read a command line (ps, /proc/PID/cmdline): use a file."
    )
    optParameters = [
        [
            "max-clients",
            None,
            None,
            "Another name of --max-connections",
            count("max-clients"),
        ],
        [
            "history",
            None,
            ChatFactory.historySize,
            "Lines of a room's history shown to newcomers; 0: none",
            count("history"),
        ],
        [
            "max-rooms",
            None,
            ChatFactory.maxRooms,
            "Rooms that may exist at once; 0: no limit",
            count("max-rooms"),
        ],
        [
            "rate-limit",
            None,
            ChatFactory.rateLimit,
            "Lines a second per client; 0: no limit",
            rate("rate-limit"),
        ],
        [
            "max-line",
            None,
            ChatFactory.maxLineLength,
            "Longest line accepted, in bytes (1 or more)",
            count("max-line", 1),
        ],
        [
            "max-output",
            None,
            ChatFactory.maxOutput,
            "Bytes a client may leave unread (past Twisted's 64 KiB buffer)"
            " before it is dropped; 0: drop it once that buffer is full",
            count("max-output"),
        ],
        timeout_option(ChatFactory, "Drop clients silent"),
        [
            "redis",
            None,
            None,
            "Share rooms and nicknames with every process using this Redis:"
            " redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS;"
            " ?ca=PEM-FILE for a private CA) or unix:///PATH/redis.sock",
        ],
        [
            "redis-timeout",
            None,
            3.0,
            "Seconds a Redis command may wait for its reply before Redis is"
            " taken for away (its clients are told, and served alone)",
            seconds("redis-timeout"),
        ],
        [
            "redis-password-file",
            None,
            None,
            "Read the Redis password from the first line of this file",
        ],
        ["redis-prefix", None, "sockproto:", "Prefix of every Redis key and channel"],
        [
            "server-name",
            None,
            IRC_SERVER,
            "The IRC server's name, in the prefix of what it says (with a dot:"
            " irc.example.org)",
        ],
        [
            "heartbeat",
            None,
            5.0,
            "Seconds between heartbeats over Redis; a process silent for two"
            " is taken for dead, its members leave",
            seconds("heartbeat"),
        ],
    ]

    supportedInterfaces = [IUsernamePassword]

    def __init__(self) -> None:
        super().__init__()
        self["web"] = []
        self["web-origin"] = []
        self["web-host"] = []
        self["irc"] = []

    def opt_irc(self, description: str) -> None:
        """Also speak IRC here (tcp:6667, ssl:6697:...); repeatable"""
        self["irc"].append(check_endpoint(description))

    def opt_web(self, description: str) -> None:
        """Also serve the web page and /ws here (tcp:8080, ssl:...); repeatable"""
        self["web"].append(check_endpoint(description))

    def opt_web_origin(self, origin: str) -> None:
        """Let pages from this origin (https://example.org) use /ws too; repeatable"""
        if "://" not in origin:
            raise usage.UsageError(
                f"--web-origin takes SCHEME://HOST[:PORT], not {origin!r}"
            )
        self["web-origin"].append(origin)

    def opt_web_host(self, name: str) -> None:
        """Also answer web requests for this host name (chat.example.org); repeatable"""
        if host_name(name) != name.lower() or ":" in name:
            raise usage.UsageError(f"--web-host takes a host name, not {name!r}")
        self["web-host"].append(name)

    def otherPorts(self) -> Dict[str, List[str]]:
        return {name: self[name] for name in ("web", "irc") if self[name]}

    def otherFactory(self, name: str, factory: ServiceFactory) -> ServiceFactory:
        assert isinstance(factory, ChatFactory)
        if name == "irc":
            return IrcChatFactory(factory, self["server-name"])
        return WebChatFactory(factory, self["web-origin"], self["web-host"])

    def postOptions(self) -> None:
        super().postOptions()
        checkers = self.get("credCheckers", [])
        if len(checkers) > 1:
            raise usage.UsageError("give --auth once")
        if checkers:
            _check_accounts(checkers[0])
        clients, connections = self["max-clients"], self["max-connections"]
        if None not in (clients, connections) and clients != connections:
            raise usage.UsageError("--max-clients and --max-connections disagree")
        if clients is not None:
            self["max-connections"] = clients
        self.redisAddress = self._redisAddress()
        if self["web-origin"] and not self["web"]:
            raise usage.UsageError("--web-origin needs --web")
        if self["web-host"] and not self["web"]:
            raise usage.UsageError("--web-host needs --web")
        if not valid_irc_server_name(self["server-name"]):
            raise usage.UsageError(f"--server-name takes {SERVER_NAME_RULE}")

    def _redisAddress(self) -> Optional[RedisAddress]:
        url = self["redis"]
        if url is None:
            if self["redis-password-file"] is not None:
                raise usage.UsageError("--redis-password-file needs --redis")
            return None
        try:
            address = parse_redis_url(url)
        except ValueError as e:
            raise usage.UsageError(f"--redis: {e}") from None
        path = self["redis-password-file"]
        if path is not None:
            try:
                address.password = read_password_file(path)
            except OSError as e:
                msg = f"cannot read {path}: {describe_error(e)}"
                raise usage.UsageError(msg) from None
        try:
            import hiredis  # noqa: F401
        except ImportError:
            raise usage.UsageError(
                "--redis needs the redis extra: pip install 'sockproto[redis]'"
            ) from None
        if not self["heartbeat"]:
            raise usage.UsageError("--heartbeat must be more than 0")
        return address

    def buildServer(self) -> Optional[IChatServer]:
        """
        The shared back end when --redis is given, else None (the factory
        makes an in-process one).
        """
        address = getattr(self, "redisAddress", None)
        if address is None:
            return None
        reactor = default_reactor()
        return RedisChatServer(
            f"sockproto chat on {socket.gethostname()}",
            RedisLink(
                address,
                reactor,
                maxDelay=min(10.0, self["heartbeat"]),
                timeout=self["redis-timeout"],
            ),
            reactor,
            historySize=self["history"],
            maxRooms=self["max-rooms"],
            prefix=self["redis-prefix"],
            heartbeat=self["heartbeat"],
        )

    def buildFactory(self) -> ServiceFactory:
        checkers = self.get("credCheckers", [])
        return ChatFactory(
            self.buildServer(),
            checker=checkers[0] if checkers else None,
            maxLineLength=self["max-line"],
            rateLimit=self["rate-limit"],
            maxOutput=self["max-output"],
            historySize=self["history"],
            maxRooms=self["max-rooms"],
            **self.limits(),
        )


def _check_accounts(checker: Any) -> None:
    """
    Raise L{usage.UsageError} unless C{checker} can protect nicknames.
    """
    try:
        Accounts(checker, Clock())
    except UnsupportedCheckerError as e:
        raise usage.UsageError(str(e)) from None
    except OSError as e:
        path = getattr(checker, "filename", "")
        raise usage.UsageError(f"cannot read {path}: {describe_error(e)}") from None
