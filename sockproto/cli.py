# -*- test-case-name: tests.test_cli -*-
"""
The C{sockproto} command: the client side of the services.

    sockproto send HOST PORT [MESSAGE]
"""

import getopt
import os
import signal
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet import defer, error, task
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.python import usage
from twisted.python.failure import Failure

from . import __version__
from .chat.client import (
    ChatClientProtocol,
    KeyboardProtocol,
    NickRefusedError,
    ServerClosedError,
    TLSHandshakeError,
    terminal_keyboard,
)
from .coucou import send_message
from .tlsclient import HostnameMismatchError, client_tls_options

__all__ = ["main", "run"]

INTERRUPTED = 130
"""The exit status after Ctrl-C, as shells report a process killed by SIGINT."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise usage.UsageError(f"port must be a number from 1 to 65535, not {text!r}")
    return port


ENDPOINT_TYPES = ("tcp:", "tcp6:", "unix:", "tls:", "ssl:")


def _where(options: usage.Options, args: Sequence[str]) -> List[str]:
    """
    Take HOST PORT, or an endpoint string, from C{args}; return the rest.
    """
    if args and args[0].startswith(ENDPOINT_TYPES):
        options["endpoint"] = args[0]
        options["host"], options["port"] = args[0], 0
        return list(args[1:])
    if len(args) < 2:
        raise usage.UsageError("HOST and PORT, or an ENDPOINT, are needed")
    options["endpoint"] = None
    options["host"], options["port"] = _host(args[0]), _port(args[1])
    return list(args[2:])


def _host(text: str) -> str:
    # "[::1]" is how addresses with a port are written, in logs too.
    if text.startswith("[") and text.endswith("]"):
        return text[1:-1]
    return text


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"must be a positive number of seconds, not {text!r}")
    return value


class _AnyOrderOptions(usage.Options):
    """
    Options that may come after the positional arguments too, as in
    C{sockproto chat HOST PORT --nick NAME}.
    """

    def opt_version(self) -> None:
        """
        Print sockproto's version and exit.
        """
        print(f"sockproto {__version__}")
        sys.exit(0)

    opt_h = usage.Options.opt_help

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        arguments = list(sys.argv[1:] if options is None else options)
        try:
            pairs, positional = getopt.gnu_getopt(
                arguments, self.shortOpt, self.longOpt
            )
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        ordered: List[str] = []
        for name, value in pairs:
            ordered += [name, value] if _takes_value(self, name) else [name]
        super().parseOptions(ordered + ["--"] + positional)


def _takes_value(options: usage.Options, name: str) -> bool:
    if name.startswith("--"):
        return name[2:] + "=" in options.longOpt
    return name[1:] + ":" in options.shortOpt


class SendOptions(_AnyOrderOptions):
    """
    C{sockproto send HOST PORT [MESSAGE]}.
    """

    synopsis = "HOST PORT [MESSAGE] | ENDPOINT [MESSAGE]"
    longdesc = (
        "Connect to HOST:PORT (a name or an IPv4/IPv6 address), or to a"
        " Twisted client endpoint (tcp:HOST:PORT, unix:PATH, tls:HOST:PORT),"
        " send MESSAGE"
        " (default: coucou), shut down the sending side and wait until the"
        " server closes. What the server sends back is printed; a line"
        " starting with 'error:' from the server makes the exit status 1."
    )
    optFlags = [["tls", None, "Use TLS, and verify the server's certificate."]]
    optParameters = [
        ["timeout", "t", 10.0, "Give up after this many seconds.", _timeout],
        ["ca", None, None, "With --tls: trust this PEM CA file, not the system's."],
    ]

    def parseArgs(self, *args: str) -> None:  # type: ignore[override]
        rest = _where(self, args)
        if len(rest) > 1:
            raise usage.UsageError("too many arguments")
        self["message"] = rest[0] if rest else "coucou"

    def postOptions(self) -> None:
        if self["ca"] and not self["tls"]:
            raise usage.UsageError("--ca goes with --tls")


class ChatOptions(_AnyOrderOptions):
    """
    C{sockproto chat HOST PORT [--nick NAME]}.
    """

    synopsis = "HOST PORT | ENDPOINT [--nick NAME [--password-file FILE]]"
    longdesc = (
        "Chat interactively: lines you type go to the server, lines from the"
        " server are printed as they come. /quit or end of input leaves."
        " ENDPOINT is a Twisted client endpoint: tcp:HOST:PORT, unix:PATH,"
        " tls:HOST:PORT. A nickname the server refuses ends the chat with"
        " its reason."
    )
    optFlags = [
        ["tls", None, "Use TLS, and verify the server's certificate."],
        ["ask-password", None, "With --nick: ask for the password, unseen."],
    ]
    optParameters = [
        ["nick", "n", None, "Nickname to take once connected."],
        [
            "password-file",
            None,
            None,
            "With --nick: the registered nickname's password is the first"
            " line of this file.",
        ],
        ["timeout", "t", 10.0, "Give up connecting after this many seconds.", _timeout],
        ["ca", None, None, "With --tls: trust this PEM CA file, not the system's."],
    ]

    def parseArgs(self, *args: str) -> None:  # type: ignore[override]
        if _where(self, args):
            raise usage.UsageError("too many arguments")

    def postOptions(self) -> None:
        if self["ca"] and not self["tls"]:
            raise usage.UsageError("--ca goes with --tls")
        asked = self["password-file"] or self["ask-password"]
        if asked and not self["nick"]:
            raise usage.UsageError("a password goes with --nick")
        if self["nick"] is not None and (not self["nick"] or " " in self["nick"]):
            raise usage.UsageError(
                f"--nick takes one word, not {self['nick']!r}"
                " (give a password with --password-file or --ask-password)"
            )


class Options(usage.Options):
    """
    C{sockproto COMMAND ...}.
    """

    synopsis = "Usage: sockproto"
    subCommands = [
        ["send", None, SendOptions, "Send one message (the course's client)."],
        ["chat", None, ChatOptions, "Chat interactively on a sockproto chat server."],
    ]

    def opt_version(self) -> None:
        """
        Print sockproto's version and exit.
        """
        print(f"sockproto {__version__}")
        sys.exit(0)

    opt_h = usage.Options.opt_help

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is needed: " + _commands())


def _commands() -> str:
    return ", ".join(sorted(COMMANDS))


class CommandError(Exception):
    """
    A failure to report to the user as one line, with this exit status.
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _connect_error(failure: Failure, host: str, port: int, timeout: float) -> None:
    if not port:  # an endpoint string
        where = host
    else:
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if failure.check(NickRefusedError):
        raise CommandError(f"{where} refused the nickname: {failure.getErrorMessage()}")
    if failure.check(error.DNSLookupError):
        raise CommandError(f"cannot resolve host {host!r}")
    if failure.check(error.ConnectionRefusedError):
        raise CommandError(f"connection refused by {where}")
    if failure.check(defer.TimeoutError, error.TimeoutError):
        raise CommandError(f"timed out after {timeout:g} seconds talking to {where}")
    if failure.check(HostnameMismatchError):
        raise CommandError(f"TLS with {where} failed: {failure.getErrorMessage()}")
    if failure.check(TLSHandshakeError):
        raise CommandError(f"TLS with {where} failed: {failure.getErrorMessage()}")
    if failure.check("OpenSSL.SSL.Error"):
        raise CommandError(f"TLS with {where} failed: {_ssl_reason(failure)}")
    if failure.check(ServerClosedError):
        raise CommandError(f"{where} closed the connection")
    if failure.check(error.ConnectError, error.ConnectionLost, OSError):
        raise CommandError(f"cannot talk to {where}: {failure.getErrorMessage()}")
    failure.raiseException()


def _ssl_reason(failure: Failure) -> str:
    # pyOpenSSL gives [(library, function, reason), ...]
    value: Any = failure.value
    errors = value.args[0] if value.args else []
    reasons = [e[-1] for e in errors if isinstance(e, tuple) and e and e[-1]]
    reason = ", ".join(reasons) or failure.getErrorMessage()
    if "wrong version number" in reason or "packet length too long" in reason:
        reason += " (does this port speak plain text? try without --tls)"
    return reason


def client_endpoint(reactor: Any, options: usage.Options) -> Any:
    """
    The endpoint C{options} ask for: host, port, and TLS with C{--tls}.
    """
    if options["endpoint"] is not None:
        if options["tls"]:
            raise CommandError("--tls goes with HOST PORT; use a tls: endpoint")
        try:
            return clientFromString(reactor, options["endpoint"])
        except Exception as e:
            raise CommandError(f"bad endpoint {options['endpoint']!r}: {e}") from None
    host, port = options["host"], options["port"]
    endpoint = HostnameEndpoint(reactor, host, port, timeout=options["timeout"])
    if not options["tls"]:
        return endpoint
    try:
        from twisted.internet.ssl import Certificate, platformTrust
    except ImportError:
        raise CommandError("--tls needs: pip install 'sockproto[tls]'") from None
    trust: Any = platformTrust()
    if options["ca"]:
        try:
            with open(options["ca"], "rb") as f:
                trust = Certificate.loadPEM(f.read())
        except Exception as e:
            raise CommandError(f"cannot read CA file {options['ca']!r}: {e}") from None
    return wrapClientTLS(client_tls_options(host, trustRoot=trust), endpoint)


@defer.inlineCallbacks
def send(reactor: Any, options: SendOptions) -> Any:
    """
    Run C{sockproto send}.
    """
    host, port, timeout = options["host"], options["port"], options["timeout"]
    endpoint = client_endpoint(reactor, options)
    message = options["message"].encode("utf-8")
    try:
        reply = yield send_message(endpoint, message, timeout=timeout, clock=reactor)
    except Exception:
        _connect_error(Failure(), host, port, timeout)
    text = reply.decode("utf-8", "replace")
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if errors:
        raise CommandError(f"the server said: {errors[0]}")


@defer.inlineCallbacks
def chat(reactor: Any, options: ChatOptions) -> Any:
    """
    Run C{sockproto chat}: standard input and output to the chat server.
    """
    from twisted.internet.stdio import StandardIO

    host, port, timeout = options["host"], options["port"], options["timeout"]
    endpoint = client_endpoint(reactor, options)
    keyboard: List[Any] = []
    terminal = None
    password = _password(options)
    protocol = ChatClientProtocol(_Output(keyboard), options["nick"], password)
    typing = KeyboardProtocol(protocol)
    try:
        yield endpoint.connect(protocol_factory(protocol)).addTimeout(timeout, reactor)
        terminal = terminal_keyboard(protocol, reactor)
        keyboard.append(terminal or StandardIO(typing, reactor=reactor))
        yield protocol.done
    except Exception:
        _connect_error(Failure(), host, port, timeout)
    finally:
        if keyboard:
            keyboard[0].loseConnection()  # once what is printed is written
            yield keyboard[0].closed if terminal else typing.closed


def _password(options: usage.Options) -> Optional[str]:
    """
    The password C{options} point to, if any: read from a file, or asked
    for without echo.
    """
    if options["password-file"]:
        try:
            with open(options["password-file"], encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            path = options["password-file"]
            raise CommandError(f"cannot read {path}: {e.strerror or e}") from None
    if options["ask-password"]:
        import getpass

        try:
            return getpass.getpass(f"password for {options['nick']}: ")
        except EOFError:
            raise CommandError("no password given") from None
    return None


class _Output:
    """
    Writes to standard output through the StandardIO transport, once there.
    """

    def __init__(self, keyboard: List[Any]) -> None:
        self.keyboard = keyboard
        self.early: List[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.keyboard:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            self.keyboard[0].write(data)


def protocol_factory(protocol: Any) -> Any:
    from twisted.internet.protocol import Factory

    return Factory.forProtocol(lambda: protocol)


COMMANDS: Dict[str, Callable[[Any, Any], Any]] = {"send": send, "chat": chat}


def run(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the C{sockproto} command with C{argv}; return its exit status.
    """
    options = Options()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        sys.stderr.write(f"sockproto: {e} (see: sockproto --help)\n")
        return 2
    command = COMMANDS[str(options.subCommand)]
    status: List[int] = [0]

    def go(reactor: Any) -> Any:
        def interrupted(signum: int, frame: object) -> None:
            status[0] = INTERRUPTED  # Ctrl-C: stop, quietly
            reactor.callFromThread(reactor.stop)

        signal.signal(signal.SIGINT, interrupted)
        d = defer.maybeDeferred(command, reactor, options.subOptions)
        d.addErrback(_report, status)
        return d

    try:
        task.react(go)
    except SystemExit as e:
        if e.code not in (0, None):
            status[0] = status[0] or 1
    return status[0]


def _report(failure: Failure, status: List[int]) -> None:
    if status[0] == INTERRUPTED:
        return
    if failure.check(CommandError):
        sys.stderr.write(f"sockproto: {failure.getErrorMessage()}\n")
        status[0] = failure.value.status  # type: ignore[union-attr]
    else:
        sys.stderr.write(f"sockproto: {failure.getErrorMessage()}\n")
        status[0] = 1


def main() -> None:
    """
    Entry point of the C{sockproto} console script.
    """
    try:
        status = run()
    except KeyboardInterrupt:
        status = INTERRUPTED
    except BrokenPipeError:  # sockproto --help | head
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error at exit
        status = 1
    sys.exit(status)
