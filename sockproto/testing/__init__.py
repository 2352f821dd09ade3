# -*- test-case-name: tests.test_testing -*-
"""
Helpers to test sockproto protocols, and subclasses of them, under trial or
pytest.

    - L{connect}: a protocol on an in-memory transport, to see what it writes;
    - L{ChatOnClock}: a chat and its clients on a Clock;
    - L{connect_in_memory}: a client and a server talking in memory;
    - L{listen_on_loopback}: a factory on a real loopback port 0;
    - L{LineClient}: a scripted line client that waits for expected lines.
"""

import json
import os
import re
import sys
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from twisted.internet.address import IPv4Address
from twisted.internet.defer import (
    Deferred,
    TimeoutError,
    gatherResults,
    inlineCallbacks,
)
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.error import ConnectionDone, ConnectionLost, ProcessExitedAlready
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IListeningPort,
    IReactorTime,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, ServerFactory
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ..chat import ChatFactory, ChatServer
from ..chat.backends.redis.resp import encode_command
from ..chat.frontends.irc.protocol import IrcChatFactory
from ..chat.frontends.web.protocol import WebChatFactory
from ..server import default_reactor
from ..tlsclient import client_tls_options

__all__ = [
    "ChatOnClock",
    "LineClient",
    "REDIS_MISSING",
    "RedisServer",
    "MemoryPump",
    "MemoryTransport",
    "RunningServer",
    "TwistdProcess",
    "WebSocketClient",
    "connect",
    "connect_in_memory",
    "connect_line_client",
    "connect_websocket",
    "listen_on_loopback",
    "listen_tls_on_loopback",
    "make_certificate",
    "tls_client_endpoint",
    "tls_endpoint_description",
    "settle",
    "start_twistd",
    "temporary_directory",
    "twistd_command",
    "wait_for",
    "written",
]

P = TypeVar("P", bound=Protocol)
T = TypeVar("T")

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def connect(
    factory: Factory,
    peer: IAddress = PEER,
) -> Tuple[Any, StringTransport]:
    """
    Build a protocol from C{factory} and connect it to a L{StringTransport}
    whose peer is C{peer}.

    @return: the protocol and its transport; C{transport.value()} is what
        the protocol wrote so far.
    """
    protocol: Any = factory.buildProtocol(peer)
    if protocol is None:
        raise ValueError(f"{factory!r} refused the connection from {peer}")
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


def written(transport: StringTransport) -> bytes:
    """
    Return what was written to C{transport} since the last call, and clear it.
    """
    data = transport.value()
    transport.clear()
    return data


class MemoryTransport(StringTransport):
    """
    One end of a connection in memory: what its protocol writes waits in
    C{value()} until the L{MemoryPump} hands it to the other end.  Carries
    half-closes (the course's C{shutdown}) and honours a paused reading
    side (C{pauseProducing}), as a TCP transport does.
    """

    writeClosed = False
    halfCloseDelivered = False
    lost = False
    protocol: Any = None
    """The protocol of this end."""

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class MemoryPump:
    """
    Moves bytes between the two L{MemoryTransport}s of a connection, and
    delivers half-closes and closes after the bytes before them.
    """

    def __init__(
        self,
        client: Any,
        server: Any,
        clientIO: MemoryTransport,
        serverIO: MemoryTransport,
        clock: Optional[Clock] = None,
    ) -> None:
        self.client, self.server = client, server
        self.clientIO, self.serverIO = clientIO, serverIO
        self.clock = clock

    def pump(self) -> bool:
        """
        Move what is pending one step; return whether anything moved.
        """
        if self.clock is not None:
            self.clock.advance(0)
        pairs = [(self.clientIO, self.serverIO), (self.serverIO, self.clientIO)]
        moved = False
        for writer, reader in pairs:
            moved = self._move(writer, reader) or moved
        for writer, reader in pairs:
            moved = moved or self._halfClose(writer, reader)
        return moved or self._close()

    def flush(self, turns: int = 1000) -> None:
        """
        Pump until nothing moves (at most C{turns} steps).
        """
        for _ in range(turns):
            if not self.pump():
                return

    def _move(self, writer: MemoryTransport, reader: MemoryTransport) -> bool:
        data = writer.value()
        if not data or reader.lost or reader.producerState == "paused":
            return False
        writer.clear()
        reader.protocol.dataReceived(data)
        return True

    def _halfClose(self, writer: MemoryTransport, reader: MemoryTransport) -> bool:
        if not writer.writeClosed or writer.halfCloseDelivered or writer.value():
            return False
        writer.halfCloseDelivered = True
        if IHalfCloseableProtocol.providedBy(reader.protocol):
            reader.protocol.readConnectionLost()
        else:
            writer.loseConnection()
        return True

    def _close(self) -> bool:
        ios = [self.clientIO, self.serverIO]
        closing = [io for io in ios if io.disconnecting and not io.value()]
        if not closing or any(io.lost for io in ios):
            return False
        aborted = any(io.disconnected for io in closing)
        reason = Failure(ConnectionLost() if aborted else ConnectionDone())
        for io in ios:
            io.lost = True
            io.protocol.connectionLost(reason)
        return True


def connect_in_memory(
    serverFactory: Factory,
    clientFactory: Factory,
    clock: Optional[Clock] = None,
) -> Tuple[Any, Any, MemoryPump]:
    """
    Connect a client built by C{clientFactory} to a server built by
    C{serverFactory}, in memory, through two L{MemoryTransport}s.

    @return: C{(client, server, pump)}; C{pump.flush()} moves all pending
        bytes both ways, advancing C{clock} a little each step.
    """
    serverAddress = IPv4Address("TCP", "127.0.0.1", 12345)
    clientAddress = IPv4Address("TCP", "127.0.0.1", 40000)
    client: Any = clientFactory.buildProtocol(serverAddress)
    server: Any = serverFactory.buildProtocol(clientAddress)
    serverIO = MemoryTransport(hostAddress=serverAddress, peerAddress=clientAddress)
    clientIO = MemoryTransport(hostAddress=clientAddress, peerAddress=serverAddress)
    serverIO.protocol, clientIO.protocol = server, client
    server.makeConnection(serverIO)
    client.makeConnection(clientIO)
    pump = MemoryPump(client, server, clientIO, serverIO, clock)
    pump.flush()
    return client, server, pump


class RunningServer:
    """
    A factory listening on a real loopback port.

    @ivar port: the listening port.
    @ivar host: the address it listens on (C{127.0.0.1} or C{::1}).
    @ivar portNumber: the port number the system chose.
    """

    def __init__(self, port: IListeningPort, factory: Factory, reactor: Any) -> None:
        self.port = port
        self.factory = factory
        self.reactor = reactor
        address = port.getHost()
        self.host: str = address.host  # type: ignore[attr-defined]
        self.portNumber: int = address.port  # type: ignore[attr-defined]

    @property
    def endpointDescription(self) -> str:
        """
        A client endpoint string for L{clientFromString}.
        """
        host = self.host.replace(":", "\\:")
        return f"tcp:host={host}:port={self.portNumber}"

    def endpoint(self) -> Union[TCP4ClientEndpoint, TCP6ClientEndpoint]:
        """
        A client endpoint that connects to this server.
        """
        if ":" in self.host:
            return TCP6ClientEndpoint(self.reactor, self.host, self.portNumber)
        return TCP4ClientEndpoint(self.reactor, self.host, self.portNumber)

    def stop(self) -> "Deferred[Any]":
        """
        Stop listening, then close every connection the factory still has
        open (if it keeps track of them, as sockproto's factories do).
        """
        d: Deferred[Any] = Deferred.fromCoroutine(self._stop())  # type: ignore
        return d

    async def _stop(self) -> None:
        await self.port.stopListening()  # type: ignore[misc]
        closeAll = getattr(self.factory, "closeAll", None)
        if closeAll is not None:
            await closeAll()


def listen_on_loopback(
    factory: ServerFactory,
    reactor: Any = None,
    host: str = "127.0.0.1",
) -> "Deferred[RunningServer]":
    """
    Listen with C{factory} on port 0 of C{host} (C{127.0.0.1} or C{::1}).

    @return: a Deferred firing with a L{RunningServer}; call its C{stop}
        (in C{addCleanup}, or a fixture's teardown) when done.
    """
    if reactor is None:
        reactor = default_reactor()
    if ":" in host:
        endpoint: Any = TCP6ServerEndpoint(reactor, 0, interface=host)
    else:
        endpoint = TCP4ServerEndpoint(reactor, 0, interface=host)
    d = endpoint.listen(factory)
    return d.addCallback(RunningServer, factory, reactor)


class _Inbox(Generic[T]):
    """
    What a scripted client received, and who waits for what: each waiter
    takes the next unread item that its predicate accepts, skipping those
    before it.
    """

    def __init__(self) -> None:
        self.items: List[T] = []
        self._unread = 0
        self._waiting: List[Tuple[Callable[[T], bool], Deferred[T]]] = []

    def add(self, item: T) -> None:
        self.items.append(item)
        self._match()

    def expect(
        self, predicate: Callable[[T], bool], timeout: float, clock: Any
    ) -> "Deferred[T]":
        d: Deferred[T] = Deferred()
        self._waiting.append((predicate, d))
        self._match()
        if not d.called:
            d.addTimeout(timeout, clock if clock is not None else default_reactor())
        return d

    def close(self, reason: Failure) -> None:
        waiting, self._waiting = self._waiting, []
        for _, d in waiting:
            if not d.called:
                d.errback(ConnectionError(f"connection closed: {reason.value}"))

    def _match(self) -> None:
        while self._waiting and self._unread < len(self.items):
            predicate, d = self._waiting[0]
            item = self.items[self._unread]
            self._unread += 1
            if d.called:
                self._waiting.pop(0)
            elif predicate(item):
                self._waiting.pop(0)
                d.callback(item)


class LineClient(LineOnlyReceiver):
    """
    A scripted line client: send lines, wait for the lines you expect.

    Every line received is kept in L{lines}; L{expect} waits for the next
    one that matches.

    @ivar closed: fires with C{None} when the connection is lost.
    @ivar reason: why it was lost, once it is.
    """

    transport: Any
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    timeout = 10.0

    def __init__(self, clock: Optional[IReactorTime] = None) -> None:
        self.clock = clock
        self._inbox: _Inbox[str] = _Inbox()
        self.lines = self._inbox.items
        self.closed: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None

    def lineReceived(self, line: bytes) -> None:
        self._inbox.add(line.decode("utf-8", "replace").rstrip("\r"))

    def send(self, text: str) -> None:
        """
        Send C{text} and a line end.
        """
        self.transport.write(text.encode("utf-8") + b"\n")

    def expect(
        self, match: Union[str, Callable[[str], bool]], timeout: Optional[float] = None
    ) -> "Deferred[str]":
        """
        Wait for the next unread line containing C{match} (or for which
        C{match(line)} is true), skipping the lines before it.

        @return: a Deferred firing with that line, or failing with
            L{twisted.internet.defer.TimeoutError} after C{timeout} seconds
            (default L{LineClient.timeout}) or L{ConnectionError} if the
            connection closes first.
        """
        predicate = match if callable(match) else (lambda line: match in line)
        wait = self.timeout if timeout is None else timeout
        return self._inbox.expect(predicate, wait, self.clock)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self._inbox.close(reason)
        self.reason = reason
        self.closed.callback(None)


def connect_line_client(
    endpoint: Any, clock: Optional[IReactorTime] = None
) -> "Deferred[LineClient]":
    """
    Connect a L{LineClient} to C{endpoint}.
    """
    return endpoint.connect(Factory.forProtocol(lambda: LineClient(clock)))


class WebSocketClient(Protocol):
    """
    A scripted WebSocket client, as a browser's page talks to the chat's
    C{/ws}: its frames are masked, its messages JSON.

    Every JSON message received is kept in L{messages}; L{expect} waits for
    the next one that matches.

    @ivar opened: fires with the client once the server accepted the
        upgrade, or fails with L{ConnectionError} and the HTTP status.
    @ivar closed: fires with the close code (or None) once the connection
        is lost.
    """

    transport: Any
    timeout = 10.0

    def __init__(
        self,
        host: str = "localhost",
        path: str = "/ws",
        origin: Optional[str] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        from wsproto import ConnectionType, WSConnection

        self.connection = WSConnection(ConnectionType.CLIENT)
        self.host, self.path, self.origin = host, path, origin
        self.clock = clock
        self._inbox: _Inbox[Dict[str, Any]] = _Inbox()
        self.messages = self._inbox.items
        self.opened: Deferred[WebSocketClient] = Deferred()
        self.closed: Deferred[Optional[int]] = Deferred()
        self.closeCode: Optional[int] = None
        self.status: Optional[int] = None

    def connectionMade(self) -> None:
        from wsproto.events import Request

        headers = [(b"origin", self.origin.encode())] if self.origin else []
        request = Request(self.host, self.path, extra_headers=headers)
        self.transport.write(self.connection.send(request))

    def dataReceived(self, data: bytes) -> None:
        from wsproto.events import (
            AcceptConnection,
            CloseConnection,
            Ping,
            RejectConnection,
            TextMessage,
        )

        self.connection.receive_data(data)
        for event in self.connection.events():
            if isinstance(event, AcceptConnection):
                self.opened.callback(self)
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
                self.transport.loseConnection()
            elif isinstance(event, TextMessage):
                self._text = getattr(self, "_text", "") + event.data
                if event.message_finished:
                    text, self._text = self._text, ""
                    self._inbox.add(json.loads(text))
            elif isinstance(event, Ping):
                self.transport.write(self.connection.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closeCode = event.code
                if self.connection.state.name == "REMOTE_CLOSING":
                    self.transport.write(self.connection.send(event.response()))
                self.transport.loseConnection()

    def send(self, **fields: Any) -> None:
        """
        Send one JSON message: C{client.send(type="line", text="hi")}.
        """
        self.sendText(json.dumps(fields))

    def say(self, text: str) -> None:
        """
        Send a line (or a /command), as the page's input does.
        """
        self.send(type="line", text=text)

    def sendText(self, text: str) -> None:
        from wsproto.events import TextMessage

        self.transport.write(self.connection.send(TextMessage(text)))

    def sendBytes(self, data: bytes) -> None:
        from wsproto.events import BytesMessage

        self.transport.write(self.connection.send(BytesMessage(data)))

    def expect(
        self,
        match: Union[str, Callable[[Dict[str, Any]], bool]],
        text: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> "Deferred[Dict[str, Any]]":
        """
        Wait for the next unread message of type C{match} (whose text
        contains C{text}, if given), or for which C{match(message)} is true,
        skipping those before it.
        """
        if callable(match):
            predicate = match
        else:
            kind = match

            def predicate(m: Dict[str, Any]) -> bool:
                wanted = text is None or text in str(m.get("text", ""))
                return m.get("type") == kind and wanted

        wait = self.timeout if timeout is None else timeout
        return self._inbox.expect(predicate, wait, self.clock)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"refused: HTTP {self.status}"))
        self._inbox.close(reason)
        self.closed.callback(self.closeCode)


def connect_websocket(
    endpoint: Any, origin: Optional[str] = None, host: str = "localhost"
) -> "Deferred[WebSocketClient]":
    """
    Connect a L{WebSocketClient} to C{endpoint}'s C{/ws}; fires once the
    upgrade is accepted.
    """
    d = endpoint.connect(
        Factory.forProtocol(lambda: WebSocketClient(host, "/ws", origin))
    )
    return d.addCallback(lambda client: client.opened)


_LISTENING = re.compile(r"(\w+) listening on (\[[^\]]+\]|[^\s:]+):(\d+)")


class TwistdProcess(ProcessProtocol):
    """
    C{twistd -n sockproto ...} running in a child process, as a user runs it.

    @ivar addresses: for each service, the C{(host, port)} pairs it reported
        listening on.
    @ivar output: everything the process wrote to standard output.
    @ivar errors: everything it wrote to standard error.
    @ivar ended: fires with the exit status (or C{-signal}) when it exits.
    """

    def __init__(self, services: Sequence[str]) -> None:
        self.services = set(services)
        self.addresses: Dict[str, List[Tuple[str, int]]] = {}
        self.output = b""
        self.errors = b""
        self.ready: Deferred[TwistdProcess] = Deferred()
        self.ended: Deferred[int] = Deferred()

    transport: Any

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for match in _LISTENING.finditer(data.decode("utf-8", "replace")):
            name, host, port = match.groups()
            self.addresses.setdefault(name, []).append((host.strip("[]"), int(port)))
        if not self.ready.called and self.services <= set(self.addresses):
            self.ready.callback(self)

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        ended: Any = reason.value
        status = ended.exitCode if ended.exitCode is not None else -ended.signal
        if not self.ready.called:
            self.ready.errback(
                RuntimeError(f"twistd exited {status}: {self.errors!r} {self.output!r}")
            )
        self.ended.callback(status)

    def address(self, service: str) -> Tuple[str, int]:
        """
        The first address C{service} listens on.
        """
        return self.addresses[service][0]

    def stop(self, signal: str = "TERM") -> "Deferred[int]":
        """
        Send C{signal} and return L{ended}.
        """
        if not self.ended.called:
            try:
                self.transport.signalProcess(signal)
            except ProcessExitedAlready:
                pass  # it has exited; processEnded is on its way
        return self.ended


def twistd_command() -> List[str]:
    """
    The C{twistd} of the running Python's environment.
    """
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def start_twistd(
    args: Sequence[str],
    services: Sequence[str] = (),
    reactor: Any = None,
    timeout: float = 30.0,
    cwd: Optional[str] = None,
) -> "Deferred[TwistdProcess]":
    """
    Start C{twistd -n --pidfile= sockproto ARGS...} and wait until each of
    C{services} has logged the address it listens on (use port 0).

    @return: a Deferred firing with the L{TwistdProcess}; stop it with
        C{stop()} when done.
    """
    if reactor is None:
        reactor = default_reactor()
    command = twistd_command() + ["-n", "--pidfile=", "sockproto", *args]
    process = TwistdProcess(services)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    reactor.spawnProcess(process, command[0], command, env=env, path=cwd)
    if not services:
        process.ready.callback(process)
    d = process.ready.addTimeout(timeout, reactor)
    d.addErrback(_kill_then_fail, process)
    return d


def _kill_then_fail(failure: Failure, process: TwistdProcess) -> Failure:
    if not process.ended.called:
        try:
            process.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
    return failure


@inlineCallbacks
def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    reactor: Any = None,
) -> Any:
    """
    Poll C{condition()} every C{interval} seconds until it is true, for
    tests over real sockets where no single event says "done".

    @return: a Deferred firing with the true value, or failing with
        L{twisted.internet.defer.TimeoutError} after C{timeout} seconds.
    """
    if reactor is None:
        reactor = default_reactor()
    deadline = reactor.seconds() + timeout
    while True:
        value = condition()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise TimeoutError(f"condition not met in {timeout:g} seconds")
        yield deferLater(reactor, interval, lambda: None)


def make_certificate(
    directory: str,
    hostname: str = "localhost",
    names: Optional[Sequence[str]] = None,
) -> Tuple[str, str]:
    """
    Write a self-signed certificate for C{hostname} (and for 127.0.0.1 and
    ::1) and its private key into C{directory}, for TLS tests.  Needs the
    C{tls} extra (it uses C{cryptography}, which pyOpenSSL brings).

    @param names: the DNS names and IP addresses of its subjectAltName
        instead (C{hostname} stays its common name); C{()} makes a
        certificate without one, as C{openssl req -x509 -subj /CN=...} does.
    @return: the paths of the certificate and of the key, both PEM.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    if names is None:
        names = [hostname, "127.0.0.1", "::1"]
    alternatives: List[Any] = []
    for alternative in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(alternative)))
        except ValueError:
            alternatives.append(x509.DNSName(alternative))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if alternatives:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alternatives), critical=False
        )
    certificate = builder.sign(key, hashes.SHA256())
    certPath = os.path.abspath(os.path.join(directory, "cert.pem"))
    keyPath = os.path.abspath(os.path.join(directory, "key.pem"))
    with open(certPath, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(keyPath, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return certPath, keyPath


def tls_endpoint_description(certPath: str, keyPath: str, port: int = 0) -> str:
    """
    A server endpoint string for TLS on loopback with that certificate.
    """
    escape = _escape_endpoint_value
    return (
        f"ssl:{port}:interface=127.0.0.1"
        f":privateKey={escape(keyPath)}:certKey={escape(certPath)}"
    )


def _escape_endpoint_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def listen_tls_on_loopback(
    factory: ServerFactory, certPath: str, keyPath: str, reactor: Any = None
) -> "Deferred[RunningServer]":
    """
    Like L{listen_on_loopback}, over TLS with that certificate.
    """
    from twisted.internet.endpoints import serverFromString

    if reactor is None:
        reactor = default_reactor()
    endpoint = serverFromString(reactor, tls_endpoint_description(certPath, keyPath))
    d = endpoint.listen(factory)
    return d.addCallback(RunningServer, factory, reactor)


def tls_client_endpoint(
    server: RunningServer, certPath: str, hostname: str = "localhost"
) -> Any:
    """
    A client endpoint to C{server} over TLS, trusting only C{certPath}.
    """
    from twisted.internet.endpoints import wrapClientTLS
    from twisted.internet.ssl import Certificate

    with open(certPath, "rb") as f:
        trust = Certificate.loadPEM(f.read())
    options = client_tls_options(hostname, trustRoot=trust)
    return wrapClientTLS(options, server.endpoint())


def _free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago (for a child
    process that cannot be given port 0 and asked which it got).
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def temporary_directory(test: Any) -> str:
    """
    A new empty directory, removed when C{test} ends.  Unlike trial's
    C{mktemp}, which makes a path relative to the current directory, this
    leaves nothing behind when the tests run under pytest.
    """
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="sockproto-test-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


class ChatOnClock:
    """
    A chat on a L{Clock}, for unit tests: its L{ChatFactory} (serving
    L{ChatProtocol}, the line front end) and clients on
    L{StringTransport}s, each from its own port.

    Unless given, the rate limit and the per-address limits are off, so
    that tests send as fast as they like from one address.

    @ivar clock: the clock every timer of the chat runs on.
    @ivar server: the back end (a L{ChatServer} unless one is given).
    @ivar factory: the L{ChatFactory}.
    """

    def __init__(
        self,
        server: Any = None,
        clock: Optional[Clock] = None,
        *,
        historySize: int = 20,
        maxRooms: int = 1000,
        **options: Any,
    ) -> None:
        """
        @param server: the back end; by default a L{ChatServer} named
            "test chat" with C{historySize} and C{maxRooms}.
        @param options: for the L{ChatFactory}.
        """
        self.clock = clock if clock is not None else Clock()
        if server is None:
            server = ChatServer(
                "test chat", self.clock, historySize=historySize, maxRooms=maxRooms
            )
        self.server = server
        options.setdefault("rateLimit", 0)
        options.setdefault("maxPerPeer", 0)
        self.factory = ChatFactory(server, clock=self.clock, **options)
        self.port = 40000

    def join(self, host: str = "127.0.0.1") -> Tuple[Any, StringTransport]:
        """
        Connect a client from C{host}; return its protocol and transport,
        once the chat has welcomed it.
        """
        self.port += 1
        protocol, transport = connect(self.factory, IPv4Address("TCP", host, self.port))
        self.clock.advance(0)
        return protocol, transport

    def send(self, protocol: Any, *lines: str) -> None:
        """
        Have C{protocol}'s client type C{lines}, then end the reactor turn.
        """
        for line in lines:
            protocol.dataReceived(line.encode("utf-8") + b"\n")
        self.clock.advance(0)

    def web(
        self, origins: Sequence[str] = (), hosts: Sequence[str] = (), **limits: Any
    ) -> Any:
        """
        The chat's web front end (a L{WebChatFactory}), made once: C{limits}
        override the chat's own (C{maxPerPeer}, C{timeout}, ...).
        """
        if getattr(self, "_web", None) is None:
            self._web = WebChatFactory(self.factory, origins, hosts)
            for name, value in limits.items():
                setattr(self._web, name, value)
        return self._web

    def irc(self, **limits: Any) -> Any:
        """
        The chat's IRC front end (an L{IrcChatFactory}), made once: C{limits}
        override its own.
        """
        if getattr(self, "_irc", None) is None:
            self._irc = IrcChatFactory(self.factory.chat)
            for name, value in limits.items():
                setattr(self._irc, name, value)
        return self._irc

    def browser(self, origin: Optional[str] = None) -> Tuple[Any, Any, MemoryPump]:
        """
        A L{WebSocketClient} connected in memory to L{web}'s C{/ws}, as the
        page does; returns C{(client, server protocol, pump)}, once the
        chat has welcomed it.
        """
        factory: Any = Factory.forProtocol(
            lambda: WebSocketClient("localhost", "/ws", origin, self.clock)
        )
        client, server, pump = connect_in_memory(self.web(), factory, self.clock)
        pump.flush()
        return client, server, pump


REDIS_MISSING = (
    "no redis-server on the PATH: apt-get install redis-server"
    " (or pass its folder in PATH)"
)


class RedisServer:
    """
    A private C{redis-server} for tests: on a UNIX socket in its own
    folder, saving nothing to disk, stopped by L{stop}.  Skip the tests
    that need one with L{REDIS_MISSING} when L{available} is false.

    @ivar url: the URL to give C{--redis}.
    """

    executable = "redis-server"

    def __init__(
        self,
        directory: str,
        password: Optional[str] = None,
        tls: bool = False,
        config: Sequence[str] = (),
    ) -> None:
        """
        @param password: if given, the server requires it (C{requirepass}),
            and L{url} carries it.
        @param tls: also listen for TLS on a loopback port, with a
            certificate made for 127.0.0.1 (L{ca}): L{url} is then that
            port's C{rediss://} URL.
        @param config: more C{redis-server} arguments
            (C{"--maxmemory", "2mb"}, ...).
        """
        self.directory = directory
        self.path = os.path.join(directory, "redis.sock")
        self.password = password
        self.config = list(config)
        secret = f":{password}@" if password is not None else ""
        self.url = f"unix://{secret}{self.path}"
        self.tls = tls
        self.ca: Optional[str] = None
        if tls:
            self.ca, self._key = make_certificate(directory, "127.0.0.1")
            self.tlsPort = _free_port()
            self.url = f"rediss://{secret}127.0.0.1:{self.tlsPort}?ca={self.ca}"
        self.process: Any = None

    @classmethod
    def available(cls) -> bool:
        import shutil

        return shutil.which(cls.executable) is not None

    @classmethod
    def skipUnlessAvailable(cls) -> None:
        """
        Skip the calling test, saying what to install, unless both
        C{redis-server} and the C{redis} extra (hiredis) are here.
        """
        from twisted.trial.unittest import SkipTest

        try:
            import hiredis  # noqa: F401
        except ImportError:
            raise SkipTest("hiredis missing: pip install 'sockproto[redis]'") from None
        if not cls.available():
            raise SkipTest(REDIS_MISSING)

    def start(self, timeout: float = 10.0) -> None:
        """
        Start the server and return once it answers.
        """
        import subprocess
        import time

        command = [
            self.executable,
            *("--port", "0", "--unixsocket", self.path, "--unixsocketperm", "700"),
            *("--save", "", "--appendonly", "no", "--dir", self.directory),
            *("--loglevel", "warning"),
        ]
        if self.password is not None:
            command += ["--requirepass", self.password]
        if self.tls:
            command += [
                *("--tls-port", str(self.tlsPort), "--bind", "127.0.0.1"),
                *("--tls-cert-file", str(self.ca), "--tls-key-file", self._key),
                *("--tls-auth-clients", "no"),
            ]
        command += self.config
        logfile = open(os.path.join(self.directory, "redis.log"), "ab")  # noqa: SIM115
        with logfile:
            self.process = subprocess.Popen(command, stdout=logfile, stderr=logfile)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.command("PING") == b"PONG":
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: see {logfile.name}")
            time.sleep(0.01)  # a child process starting, not a protocol's time

    def command(self, *args: Any) -> Any:
        """
        Run one command and return its reply, blocking: for a test's set-up
        and checks, not for code under test.
        """
        import socket

        import hiredis

        reader = hiredis.Reader()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.path)
            if self.password is not None:
                sock.sendall(encode_command(("AUTH", self.password)))
                self._reply(sock, reader)
            sock.sendall(encode_command(args))
            return self._reply(sock, reader)

    @staticmethod
    def _reply(sock: Any, reader: Any) -> Any:
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionLost("redis-server closed the connection")
            reader.feed(data)

    def pause(self) -> None:
        """
        Stop the server's process (C{SIGSTOP}) as a stalled server does:
        its connections stay open, and nothing answers.
        """
        import signal

        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """
        Let a paused server go on (C{SIGCONT}).
        """
        import signal

        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """
        Stop the server (at once: C{SIGKILL} is what a crash looks like).
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@inlineCallbacks
def settle(servers: Sequence[Any], reactor: Any = None, timeout: float = 10.0) -> Any:
    """
    Wait until the shared chat servers C{servers} (L{RedisChatServer}s)
    are idle: no command waiting, no batch unpublished, and every message
    published meanwhile received.  A test's "turn" on a real broker.
    """
    if reactor is None:
        reactor = default_reactor()
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        yield deferLater(reactor, 0, lambda: None)
        if any(server.busy for server in servers):
            yield deferLater(reactor, 0.001, lambda: None)
            continue
        yield gatherResults([server.link.ping() for server in servers])
        yield deferLater(reactor, 0, lambda: None)
        if not any(server.busy for server in servers):
            return None
    raise TimeoutError(f"the chat servers were still busy after {timeout:g} s")
