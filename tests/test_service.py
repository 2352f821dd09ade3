import io
import os
import sys
from typing import Any, List

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from sockproto.coucou import CoucouServerFactory
from sockproto.echo import EchoFactory
from sockproto.service import EndpointService, ProtocolService
from sockproto.tap import EchoOptions, Options, makeService
from sockproto.testing import connect_line_client


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def endpoints(service: Any) -> List[str]:
    return sorted(child.description for child in service)


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "__stderr__", self.stderr)

    def test_all_in_one_runs_every_service_on_default_ports(self) -> None:
        chosen = {o.serviceName: o["listen"] for o in parse().serviceOptions()}
        self.assertEqual(chosen["coucou"], ["tcp:12345"])
        self.assertEqual(chosen["echo"], ["tcp:12346"])

    def test_all_in_one_serves_the_web_page_and_irc_unless_told_not_to(self) -> None:
        def ports(*args: str) -> Any:
            return {o.serviceName: o for o in parse(*args).serviceOptions()}[
                "chat"
            ].otherPorts()

        self.assertEqual(ports(), {"web": ["tcp:12348"], "irc": ["tcp:6667"]})
        self.assertEqual(ports("--web", "tcp:0", "--no-irc"), {"web": ["tcp:0"]})
        self.assertEqual(ports("--no-web", "--irc", "tcp:1"), {"irc": ["tcp:1"]})
        [alone] = parse("chat").serviceOptions()
        self.assertEqual(alone.otherPorts(), {})

    def test_all_in_one_endpoint_options_repeat(self) -> None:
        options = parse(
            "--echo", "tcp:0", "--echo", "tcp6:0", "--no-coucou", "--no-chat"
        )
        [echo] = options.serviceOptions()
        self.assertEqual(echo["listen"], ["tcp:0", "tcp6:0"])

    def test_one_service_with_listen(self) -> None:
        options = parse("echo", "--listen", "tcp:0:interface=127.0.0.1:backlog=20")
        [echo] = options.serviceOptions()
        self.assertEqual(echo["listen"], ["tcp:0:interface=127.0.0.1:backlog=20"])

    def test_malformed_endpoint_is_one_line_error(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            parse("echo", "--listen", "tcp:notaport")
        self.assertEqual(caught.exception.code, 1)
        message = self.stderr.getvalue()
        self.assertEqual(message.count("\n"), 1)
        self.assertIn("bad endpoint 'tcp:notaport'", message)

    def test_unknown_endpoint_type_is_one_line_error(self) -> None:
        with self.assertRaises(SystemExit):
            parse("--echo", "carrier-pigeon:1")
        self.assertIn("carrier-pigeon", self.stderr.getvalue())

    def test_unknown_option_is_one_line_error(self) -> None:
        with self.assertRaises(SystemExit):
            parse("coucou", "--frobnicate")
        self.assertIn("--frobnicate", self.stderr.getvalue())

    def test_negative_count_is_refused(self) -> None:
        self.assertRaises(
            usage.UsageError, EchoOptions().parseOptions, ["--max-connections=-1"]
        )

    def test_leaving_out_every_service_is_an_error(self) -> None:
        with self.assertRaises(SystemExit):
            parse("--no-echo", "--no-coucou", "--no-chat").serviceOptions()


class MakeServiceTests(SynchronousTestCase):
    def test_all_in_one_is_one_service_per_protocol(self) -> None:
        top = makeService(parse("--no-chat"), MemoryReactor())
        services = {s.name: s for s in top}
        self.assertEqual(set(services), {"coucou", "echo"})
        self.assertIsInstance(services["echo"].factory, EchoFactory)
        self.assertIsInstance(services["coucou"].factory, CoucouServerFactory)
        self.assertEqual(endpoints(services["coucou"]), ["tcp:12345"])

    def test_options_reach_the_factory(self) -> None:
        top = makeService(
            parse(
                "coucou", "--max-size", "20", "--timeout", "5", "--max-connections", "3"
            ),
            MemoryReactor(),
        )
        [service] = list(top)
        factory = service.factory
        self.assertEqual(
            (factory.maxSize, factory.timeout, factory.maxConnections), (20, 5.0, 3)
        )

    def test_timeout_zero_means_never(self) -> None:
        [service] = list(makeService(parse("echo", "--timeout", "0"), MemoryReactor()))
        self.assertIsNone(service.factory.timeout)

    def test_listening_on_every_endpoint(self) -> None:
        reactor = MemoryReactor()
        top = makeService(
            parse("echo", "--listen", "tcp:0", "--listen", "tcp:1"), reactor
        )
        IService(top).privilegedStartService()
        self.assertEqual(sorted(port for port, *_ in reactor.tcpServers), [0, 1])

    def test_port_in_use_exits_with_one_line(self) -> None:
        import errno

        from twisted.internet.error import CannotListenError
        from twisted.internet.testing import RaisingMemoryReactor

        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        inUse = OSError(errno.EADDRINUSE, "Address already in use")
        reactor = RaisingMemoryReactor(listenException=CannotListenError("", 1, inUse))
        from twisted.internet.endpoints import serverFromString

        service = ProtocolService(
            EchoFactory(), {"tcp:1": serverFromString(reactor, "tcp:1")}
        )
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(
            stderr.getvalue(),
            "sockproto: echo cannot listen on tcp:1: Address already in use\n",
        )

    def test_endpoint_service_is_named_after_service_and_endpoint(self) -> None:
        service = EndpointService("tcp:0", None, EchoFactory())  # type: ignore[arg-type]
        self.assertEqual(service.name, "echo on tcp:0")

    def test_stopping_before_listening_cancels_the_listen(self) -> None:
        from twisted.internet.defer import Deferred

        cancelled: List[Deferred[Any]] = []

        class Slow:
            def listen(self, factory: Any) -> "Deferred[Any]":
                return Deferred(cancelled.append)

        service = EndpointService("slow:", Slow(), EchoFactory())  # type: ignore
        service.startService()
        d = service.stopService()
        self.assertEqual(len(cancelled), 1)
        self.assertIsNone(self.successResultOf(d))
        self.assertFalse(service.running)
        self.assertIsNone(service.port)


class OptionMessagesTests(SynchronousTestCase):
    """
    Every bad option gets one line that names it and says what is wanted,
    in words rather than Python's, pointing to the right --help.
    """

    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "__stderr__", self.stderr)

    def error(self, *args: str) -> str:
        with self.assertRaises(SystemExit) as caught:
            parse(*args)
        self.assertEqual(caught.exception.code, 1)
        message = self.stderr.getvalue()
        self.stderr.seek(0)
        self.stderr.truncate()
        self.assertEqual(message.count("\n"), 1, message)
        return message.strip()

    def test_numbers_are_finite_and_named(self) -> None:
        for value in ["nan", "inf", "-inf", "-1"]:
            message = self.error("chat", "--rate-limit", value)
            self.assertIn("--rate-limit takes a number a second, 0 or more", message)
        self.assertEqual(
            self.error("echo", "--max-connections", "1.5"),
            "twistd sockproto echo: --max-connections takes a whole number,"
            " not '1.5' (see: twistd sockproto echo --help)",
        )
        self.assertIn(
            "--timeout takes a number of seconds",
            self.error("echo", "--timeout", "nan"),
        )

    def test_negative_zero_is_zero(self) -> None:
        [chat] = parse("chat", "--timeout", "-0").serviceOptions()
        self.assertEqual(str(chat["timeout"]), "0.0")

    def test_sizes_of_zero_are_refused(self) -> None:
        self.assertIn(
            "--max-line takes a whole number, at least 1",
            self.error("chat", "--max-line", "0"),
        )
        self.assertIn(
            "--max-size takes a whole number, at least 1",
            self.error("coucou", "--max-size", "0"),
        )

    def test_endpoint_errors_in_words(self) -> None:
        self.assertIn("the port must be a number", self.error("--echo", "tcp:notaport"))
        self.assertIn(
            "the port must be from 0 to 65535", self.error("--echo", "tcp:99999")
        )
        self.assertIn(
            "escape the colons", self.error("chat", "--listen", "tcp6:1:interface=::1")
        )
        self.assertNotIn("int()", self.stderr.getvalue())

    def test_contradictions_are_usage_errors(self) -> None:
        self.assertIn("contradict", self.error("--no-echo", "--echo", "tcp:0"))
        self.assertIn(
            "--echo is for running every service",
            self.error("--echo", "tcp:0", "chat", "--listen", "tcp:0"),
        )
        self.assertIn("left out", self.error("--no-echo", "--no-chat", "--no-coucou"))
        self.assertIn("contradict", self.error("--web", "tcp:0", "--no-web"))
        self.assertIn("needs the chat", self.error("--web", "tcp:0", "--no-chat"))
        self.assertIn("contradict", self.error("--irc", "tcp:0", "--no-irc"))
        self.assertIn(
            "--web and --no-web before chat",
            self.error("--no-web", "chat", "--listen", "tcp:0"),
        )
        self.assertIn(
            "--web-origin needs --web", self.error("chat", "--web-origin", "http://a")
        )
        self.assertIn(
            "--web-origin takes SCHEME://HOST[:PORT]",
            self.error("chat", "--web", "tcp:0", "--web-origin", "example.org"),
        )
        self.assertIn(
            "disagree",
            self.error("chat", "--max-clients", "1", "--max-connections", "2"),
        )
        self.assertIn(
            "--web-host needs --web", self.error("chat", "--web-host", "a.example")
        )
        for bad in ["a b", "a.example:80", "http://a.example", ""]:
            self.assertIn(
                "--web-host takes a host name",
                self.error("chat", "--web", "tcp:0", "--web-host", bad),
            )

    def test_web_host_names_reach_the_web_front_end(self) -> None:
        [chat] = parse(
            "chat", "--web", "tcp:0", "--web-host", "Chat.Example.org"
        ).serviceOptions()
        web = chat.otherFactory("web", chat.buildFactory())
        self.assertIn("chat.example.org", web.hostNames(None))
        self.assertIn("localhost", web.hostNames(None))

    def test_chat_max_connections_is_not_ignored(self) -> None:
        [chat] = parse("chat", "--max-connections", "1").serviceOptions()
        self.assertEqual(chat.buildFactory().maxConnections, 1)
        [chat] = parse("chat", "--max-clients", "2").serviceOptions()
        self.assertEqual(chat.buildFactory().maxConnections, 2)

    def test_set_reaches_one_service_in_the_all_in_one_form(self) -> None:
        chosen = parse(
            "--set", "chat.rate-limit=10", "--set", "coucou.max-size=200"
        ).serviceOptions()
        byName = {o.serviceName: o for o in chosen}
        self.assertEqual(byName["chat"]["rate-limit"], 10.0)
        self.assertEqual(byName["coucou"]["max-size"], 200)
        self.assertEqual(byName["echo"]["timeout"], 300.0)

    def test_set_errors_name_the_service(self) -> None:
        self.assertIn(
            "chat: option --bogus not recognized", self.error("--set", "chat.bogus=1")
        )
        self.assertIn("SERVICE one of", self.error("--set", "nope.x=1"))
        self.assertIn(
            "--set is for running every service",
            self.error("--set", "chat.history=1", "chat"),
        )

    def test_defaults_come_from_the_factories(self) -> None:
        from sockproto.chat import ChatFactory
        from sockproto.coucou import CoucouServerFactory

        [chat] = parse("chat").serviceOptions()
        factory = chat.buildFactory()
        self.assertEqual(chat["history"], ChatFactory.historySize)
        self.assertEqual(factory.timeout, ChatFactory.timeout)
        self.assertEqual(CoucouServerFactory().maxSize, 140)
        self.assertEqual(
            EchoFactory().timeout, parse("echo").serviceOptions()[0]["timeout"]
        )

    def test_all_in_one_max_per_peer_reaches_every_service(self) -> None:
        chosen = parse("--max-per-peer", "0").serviceOptions()
        self.assertEqual([o["max-per-peer"] for o in chosen], [0, 0, 0])

    def test_service_help_has_its_own_usage_line(self) -> None:
        echo = EchoOptions()
        self.assertEqual(
            echo.getSynopsis(), "Usage: twistd [options] sockproto echo [options]"
        )
        text = str(echo)
        self.assertNotIn("0 for none", text)
        self.assertNotIn("  tcp6", text)
        self.assertIn("0: no limit", text)

    def test_ssl_without_the_tls_extra_names_the_extra(self) -> None:
        from sockproto import options

        def missing(reactor: Any, description: str) -> Any:
            raise ImportError("No module named 'OpenSSL'")

        self.patch(options, "serverFromString", missing)
        message = self.error("echo", "--listen", "ssl:0:privateKey=k.pem")
        self.assertIn("pip install 'sockproto[tls]'", message)

    def test_bad_tls_key_is_one_line_naming_the_problem(self) -> None:
        from sockproto.testing import make_certificate, temporary_directory

        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            raise SkipTest(
                "pyOpenSSL is missing: pip install 'sockproto[tls]'"
            ) from None
        directory = temporary_directory(self)
        cert, key = make_certificate(directory)
        garbage = os.path.join(directory, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a key\n")
        message = self.error(
            "echo", "--listen", f"ssl:0:privateKey={garbage}:certKey={cert}"
        )
        self.assertIn("bad key or certificate", message)


class _Support(Service):
    """
    A support service that is ready when the test says so.
    """

    def __init__(self) -> None:
        self.waiting: List[Deferred[None]] = []

    def whenReady(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d


class ReadinessTests(TestCase):
    """
    Ports accept connections only once the factory's support services
    are ready (the chat has reached Redis): a client that comes earlier
    waits in the listen backlog, and is then served.
    """

    @inlineCallbacks
    def test_connections_wait_in_the_backlog_until_support_is_ready(self) -> Any:
        from twisted.internet import reactor

        support = _Support()
        factory = EchoFactory()
        factory.supportServices = lambda: [support]  # type: ignore[method-assign]
        service = ProtocolService.listening(
            factory, "tcp:0:interface=127.0.0.1", reactor=reactor
        )
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        (port,) = service
        host = port.port.getHost()
        client = yield connect_line_client(
            TCP4ClientEndpoint(reactor, host.host, host.port)
        )
        self.addCleanup(client.transport.loseConnection)
        client.send("early")
        for _ in range(20):
            yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(factory.connections, set())
        self.assertEqual(client.lines, [])
        (ready,) = support.waiting
        ready.callback(None)
        yield client.expect("early")
        self.assertEqual(len(factory.connections), 1)

    def test_a_port_not_waiting_for_anything_accepts_at_once(self) -> None:
        reactor = MemoryReactor()
        from twisted.internet.endpoints import serverFromString

        service = ProtocolService(
            EchoFactory(), {"tcp:1": serverFromString(reactor, "tcp:1")}
        )
        service.privilegedStartService()
        service.startService()
        (port,) = service
        self.assertIsNotNone(port.port)


class _Entry:
    def __init__(self, name: str, value: str, load: Any) -> None:
        self.name, self.value, self.load = name, value, load


class ServiceDiscoveryTests(SynchronousTestCase):
    """
    Services declared by other packages (the sockproto.services entry
    points) join sockproto's own; one that cannot be used is left out with
    one line.
    """

    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "__stderr__", self.stderr)

    def test_entry_points_add_services_and_bad_ones_are_left_out(self) -> None:
        from sockproto import tap

        class Extra(tap.ServiceOptions):
            serviceName = "extra"

        def broken() -> Any:
            raise ImportError("No module named 'gone'")

        entries = [
            _Entry("extra", "pkg:Extra", lambda: Extra),
            _Entry("gone", "gone:Options", broken),
            _Entry("echo", "pkg:Echo", lambda: Extra),
            _Entry("odd", "pkg:thing", lambda: 42),
        ]
        self.patch(tap, "_entry_points", lambda group: entries)
        services = tap.find_services()
        self.assertEqual(list(services), ["coucou", "echo", "chat", "extra"])
        self.assertIs(services["echo"], tap.EchoOptions)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("'gone' (gone:Options) left out: ImportError", lines[0])
        self.assertIn("'echo' (pkg:Echo) left out: its name is taken", lines[1])
        self.assertIn("not a ServiceOptions subclass", lines[2])
