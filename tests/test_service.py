import io
import sys
from typing import Any, List

from twisted.application.service import IService
from twisted.internet.testing import MemoryReactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from sockproto.coucou import CoucouServerFactory
from sockproto.echo import EchoFactory
from sockproto.service import (
    EchoOptions,
    EndpointService,
    Options,
    ProtocolService,
    makeService,
)


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
