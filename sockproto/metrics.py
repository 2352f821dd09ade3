# -*- test-case-name: tests.test_metrics -*-
"""
C{--metrics ENDPOINT}: what each service counts, served as Prometheus text
at C{GET /metrics} by C{prometheus_client}'s Twisted resource.

The services count with plain integer attributes where things happen (per
connection, read, write, batch: never per byte or per delivery); the
L{SockprotoCollector} reads them when Prometheus scrapes, so that counting
costs the hot path nothing it would notice.
"""

from typing import Any, Iterable, Iterator, List, Sequence

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString

from .server import ServiceFactory
from .service import EndpointService

__all__ = ["SockprotoCollector", "metrics_service"]


class SockprotoCollector:
    """
    A C{prometheus_client} collector of sockproto's services.
    """

    def __init__(self, factories: Sequence[ServiceFactory]) -> None:
        self.factories = list(factories)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def counter(name: str, doc: str, labels: List[str]) -> Any:
            return CounterMetricFamily(f"sockproto_{name}", doc, labels=labels)

        def gauge(name: str, doc: str, labels: List[str]) -> Any:
            return GaugeMetricFamily(f"sockproto_{name}", doc, labels=labels)

        service = ["service"]
        families = {
            "open": gauge("connections_open", "Connections open now.", service),
            "accepted": counter(
                "connections_accepted", "Connections accepted.", service
            ),
            "refused": counter(
                "connections_refused",
                "Connections refused, by reason (full, per_peer, too_fast).",
                service + ["reason"],
            ),
            "in": counter("received_bytes", "Bytes received from clients.", service),
            "out": counter("sent_bytes", "Bytes sent to clients.", service),
            "timeouts": counter(
                "idle_timeouts", "Connections closed for silence.", service
            ),
            "aborts": counter(
                "aborts", "Connections aborted with output unsent.", service
            ),
            "drops": counter(
                "drops",
                "Lines or clients dropped or slowed, by reason (line_too_long,"
                " rate_limit, overflow, slow_reader).",
                service + ["reason"],
            ),
        }
        for factory in self.factories:
            name = factory.serviceName
            stats = factory.stats
            families["open"].add_metric([name], len(factory.connections))
            families["accepted"].add_metric([name], stats.accepted)
            for reason in ("full", "per_peer", "too_fast"):
                count = stats.refused.get(reason, 0)
                families["refused"].add_metric([name, reason], count)
            families["in"].add_metric([name], stats.bytesIn)
            families["out"].add_metric([name], stats.bytesOut)
            families["timeouts"].add_metric([name], stats.timeouts)
            families["aborts"].add_metric([name], stats.aborts)
            for reason in ("line_too_long", "rate_limit", "overflow", "slow_reader"):
                count = factory.drops.get(reason, 0)
                families["drops"].add_metric([name, reason], count)
        yield from families.values()
        servers = []
        for factory in self.factories:
            server = getattr(factory, "server", None)
            if server is not None and server not in servers:  # the web port's too
                servers.append(server)
                yield from self._chat(factory, server, counter, gauge)

    def _chat(
        self, factory: Any, server: Any, counter: Any, gauge: Any
    ) -> Iterable[Any]:
        counts = server.counts()
        lines = counter("chat_lines", "Lines said by this process's clients.", [])
        lines.add_metric([], counts["lines"])
        deliveries = counter(
            "chat_deliveries", "Events delivered to this process's clients.", []
        )
        deliveries.add_metric([], counts["deliveries"])
        members = gauge("chat_members", "Chat members on this process.", [])
        members.add_metric([], counts["members"])
        rooms = gauge("chat_rooms", "Rooms with members on this process.", [])
        rooms.add_metric([], counts["rooms"])
        wrong = counter(
            "chat_wrong_passwords", "Wrong passwords for registered nicknames.", []
        )
        accounts = factory.accounts
        wrong.add_metric([], accounts.wrongPasswords if accounts is not None else 0)
        families = [lines, deliveries, members, rooms, wrong]
        if "broker_up" in counts:
            up = gauge("chat_broker_up", "1 while Redis is reachable.", [])
            up.add_metric([], counts["broker_up"])
            lag = gauge(
                "chat_broker_lag_seconds",
                "Round trip of the last heartbeat to Redis.",
                [],
            )
            lag.add_metric([], counts["broker_lag"])
            families += [up, lag]
        return families


def metrics_service(
    reactor: Any, description: str, factories: Sequence[ServiceFactory]
) -> IService:
    """
    The service that serves C{GET /metrics} on endpoint C{description}.
    """
    from prometheus_client import CollectorRegistry
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.twisted import MetricsResource
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    registry = CollectorRegistry()
    registry.register(SockprotoCollector(factories))  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    site = Site(root)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]  # no line per scrape
    site.serviceName = "metrics"  # type: ignore[attr-defined]
    endpoint = serverFromString(reactor, description)
    return EndpointService(description, endpoint, site)  # type: ignore[arg-type]
