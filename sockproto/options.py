# -*- test-case-name: tests.test_service -*-
"""
What the options of every service share: endpoints checked as they are
parsed, numbers that say what they take, and the limits every service has
(declared once, in L{ServiceOptions}).  Each service's own options live
next to its factory, and take their defaults from it.
"""

import math
import sys
from typing import Any, Callable, Dict, List, Tuple, Type

from twisted.internet.endpoints import serverFromString
from twisted.python import usage

import twisted

from . import __version__
from .server import ServiceFactory, default_max_connections, default_reactor

__all__ = [
    "ServiceOptions",
    "check_endpoint",
    "count",
    "describe_error",
    "rate",
    "seconds",
    "timeout_option",
]


def check_endpoint(description: str) -> str:
    """
    Raise L{usage.UsageError} if C{description} is not a server endpoint
    string that Twisted can parse; return it unchanged otherwise.  (Parsing
    builds the endpoint; it does not listen.)
    """
    try:
        endpoint = serverFromString(default_reactor(), description)
    except ImportError as e:
        extra = " (pip install 'sockproto[tls]')" if "OpenSSL" in str(e) else ""
        raise usage.UsageError(f"bad endpoint {description!r}: {e}{extra}") from None
    except (ValueError, TypeError, KeyError, OSError) as e:
        reason = _endpoint_problem(description, e)
        raise usage.UsageError(f"bad endpoint {description!r}: {reason}") from None
    except Exception as e:  # OpenSSL's errors, for a bad key or certificate
        reason = _tls_problem(e)
        raise usage.UsageError(f"bad endpoint {description!r}: {reason}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(
            f"bad endpoint {description!r}: the port must be from 0 to 65535"
        )
    return description


def _endpoint_problem(description: str, error: Exception) -> str:
    """
    What is wrong with endpoint C{description}, in words rather than in
    Python's.
    """
    text = str(error)
    if "invalid literal for int()" in text:
        return "the port must be a number"
    if "multiple values" in text or "unexpected keyword" in text:
        return (
            "too many ':'-separated parts; escape the colons of an address"
            " with '\\', as in tcp6:12347:interface=\\:\\:1"
        )
    if isinstance(error, KeyError) or "Unknown endpoint type" in text:
        return "unknown endpoint type (tcp:, tcp6:, unix:, ssl:, ...)"
    if isinstance(error, OSError) and error.strerror:
        return (
            f"{error.strerror}: {error.filename}" if error.filename else error.strerror
        )
    return text


def _tls_problem(error: Exception) -> str:
    """
    What OpenSSL found wrong with a key or certificate, in one line.
    """
    details = error.args[0] if error.args else []
    if isinstance(details, list):
        reasons = [d[-1] for d in details if isinstance(d, tuple) and d and d[-1]]
        if reasons:
            return "bad key or certificate (" + ", ".join(reasons) + ")"
    return f"bad key or certificate ({error or type(error).__name__})"


def _number(
    option: str, kind: Callable[[str], Any], what: str, minimum: float = 0
) -> Callable[[str], Any]:
    """
    A coerce function for option C{--option}: a finite C{kind} of at
    least C{minimum}, with errors that name the option.
    """

    def coerce(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"--{option} takes {what}, not {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            least = "0 or more" if minimum == 0 else f"at least {minimum:g}"
            raise ValueError(f"--{option} takes {what}, {least}, not {text!r}")
        return value + 0  # never negative zero

    return coerce


def count(option: str, minimum: int = 0) -> Callable[[str], Any]:
    """
    A whole number for C{--option}.
    """
    return _number(option, int, "a whole number", minimum)


def seconds(option: str) -> Callable[[str], Any]:
    """
    A number of seconds for C{--option}.
    """
    return _number(option, float, "a number of seconds")


def rate(option: str) -> Callable[[str], Any]:
    """
    A number a second for C{--option}.
    """
    return _number(option, float, "a number a second")


MAX_PER_PEER = [
    "max-per-peer",
    None,
    ServiceFactory.maxPerPeer,
    "Connections one address (one IPv6 /64) may have open, and open anew"
    " every 10 s; 0: no limit",
    count("max-per-peer"),
]


METRICS = [
    "metrics",
    None,
    None,
    "Serve Prometheus metrics at GET /metrics on this endpoint (as tcp:9100)",
]

WORKERS = [
    "workers",
    None,
    1,
    "Processes that share each listening socket (1: this process alone)",
    count("workers", 1),
]


class ServiceOptions(usage.Options):
    """
    Options of one service: where it listens, and its limits.
    """

    serviceName = ""
    defaultEndpoint = ""
    description = ""
    otherPortDefaults: Dict[str, Tuple[str, str]] = {}
    """The L{otherPorts} of this service in the all-in-one form, by name:
    its default endpoint there, and what it serves (the chat's C{web}:
    C{("tcp:12348", "the chat's web page")})."""
    optParameters: List[List[Any]] = [
        [
            "max-connections",
            None,
            None,
            "Connections served at once; 0: no limit [default: the open-file"
            " limit less 64, shared by the services of the process]",
            count("max-connections"),
        ],
        MAX_PER_PEER,
        WORKERS,
        METRICS,
    ]
    sharedBy = 1
    """How many services share the process's open-file limit."""

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def getSynopsis(self) -> str:
        return f"Usage: twistd [options] sockproto {self.serviceName} [options]"

    def opt_version(self) -> None:
        """
        Display sockproto's version and exit.
        """
        print(f"sockproto {__version__} (Twisted {twisted.__version__})")
        sys.exit(0)

    def opt_listen(self, description: str) -> None:
        """Where to listen: tcp:PORT, tcp6:PORT, unix:PATH, ssl:...; repeatable"""
        self["listen"].append(check_endpoint(description))

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [self.defaultEndpoint]

    def buildFactory(self) -> ServiceFactory:
        """
        Build the factory these options describe.
        """
        raise NotImplementedError(type(self).__name__ + ".buildFactory")

    def extraServices(self) -> List[Any]:
        """
        Services this one runs besides its stream endpoints (echo's UDP
        ports); they start and stop with it.
        """
        return []

    def otherPorts(self) -> Dict[str, List[str]]:
        """
        Stream endpoints this service serves with another factory, by that
        factory's service name (the chat's C{--web}): they listen, and are
        shared with C{--workers}, like C{--listen}'s.
        """
        return {}

    def otherFactory(self, name: str, factory: ServiceFactory) -> ServiceFactory:
        """
        The factory of L{otherPorts}' C{name}, beside this service's own
        C{factory}.
        """
        raise KeyError(name)

    def allPorts(self) -> List[str]:
        """
        Every stream endpoint: C{--listen}'s and L{otherPorts}'.
        """
        ports = list(self["listen"])
        for descriptions in self.otherPorts().values():
            ports += descriptions
        return ports

    def maxConnections(self) -> int:
        """
        The limit of open connections: the option, or a share of the
        open-file limit.
        """
        limit = self["max-connections"]
        return default_max_connections(self.sharedBy) if limit is None else limit

    def limits(self) -> Dict[str, Any]:
        """
        The arguments every factory takes: C{maxConnections},
        C{maxPerPeer}, C{timeout}.
        """
        return {
            "maxConnections": self.maxConnections(),
            "maxPerPeer": self["max-per-peer"],
            "timeout": self["timeout"] or None,
        }


def timeout_option(factory: Type[ServiceFactory], what: str) -> List[Any]:
    """
    The C{--timeout} option of a service, with its factory's default.
    """
    return [
        "timeout",
        None,
        factory.timeout or 0.0,
        f"{what} this long, in seconds; 0: never",
        seconds("timeout"),
    ]


def describe_error(error: BaseException) -> str:
    """
    An error as one short phrase: its C{strerror} if it has one.
    """
    strerror = getattr(error, "strerror", None)
    return str(strerror) if strerror else str(error) or type(error).__name__
