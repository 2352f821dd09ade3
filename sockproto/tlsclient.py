# -*- test-case-name: tests.test_tls -*-
"""
TLS for sockproto's clients: the server's certificate must chain to a
trusted root I{and} name the host connected to, or the handshake fails.

Twisted's own L{optionsForClientTLS} checks the name in its verify
callback, but it only catches C{service_identity}'s C{VerificationError}:
a certificate without any subjectAltName makes C{service_identity} (from
18.1 on) raise C{CertificateError} instead, which Twisted logs and then
I{accepts} the connection.  The callback here replaces Twisted's: any
failure of the name check, of any kind, fails the handshake.
"""

from typing import Any, Callable, List

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "HostnameMismatchError",
    "StrictClientTLS",
    "check_hostname",
    "client_tls_options",
]


class HostnameMismatchError(Exception):
    """
    The server's certificate is trusted but does not name the host: the
    message says why, in one line.
    """


def _patterns(cert: Any) -> List[Any]:
    try:
        from service_identity.pyopenssl import extract_patterns
    except ImportError:  # service_identity before 23.1
        from service_identity.pyopenssl import extract_ids as extract_patterns
    return list(extract_patterns(cert))


def check_hostname(cert: Any, hostname: str) -> None:
    """
    Raise L{HostnameMismatchError} unless the pyOpenSSL certificate C{cert}
    names C{hostname} (a DNS name or an IP address) in its subjectAltName.
    The subject's common name is never used (RFC 6125 6.4.4).
    """
    from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity

    ip = isIPAddress(hostname) or isIPv6Address(hostname)
    try:
        patterns = _patterns(cert)
    except Exception as e:
        raise HostnameMismatchError(f"unreadable subjectAltName ({e})") from None
    if not patterns:
        raise HostnameMismatchError(
            "the certificate has no subjectAltName, so it names no host"
        )
    wanted = IPAddress_ID(hostname) if ip else DNS_ID(hostname)
    try:
        verify_service_identity(patterns, [wanted], [])
    except Exception:
        raise HostnameMismatchError(f"the certificate is not for {hostname}") from None


def client_tls_options(hostname: str, trustRoot: Any = None) -> "StrictClientTLS":
    """
    Client TLS options for C{hostname} (L{optionsForClientTLS}'s), whose
    certificate check refuses every certificate that does not chain to
    C{trustRoot} or whose subjectAltName does not name C{hostname}.
    """
    from twisted.internet.ssl import optionsForClientTLS

    return StrictClientTLS(optionsForClientTLS(hostname, trustRoot=trustRoot), hostname)


@implementer(IOpenSSLClientConnectionCreator)
class StrictClientTLS:
    """
    Twisted's client connection creator C{inner}, with the certificate
    check of L{check_hostname} in place of Twisted's.
    """

    def __init__(self, inner: Any, hostname: str) -> None:
        self.inner = inner
        self.hostname = hostname

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL.SSL import VERIFY_FAIL_IF_NO_PEER_CERT, VERIFY_PEER

        connection = self.inner.clientConnectionForTLS(tlsProtocol)
        callback = _verify_callback(tlsProtocol.failVerification, self.hostname)
        connection.set_verify(VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT, callback)
        return connection


def _verify_callback(
    fail: Callable[[Failure], None], hostname: str
) -> Callable[..., bool]:
    failed: List[Failure] = []

    def verify(connection: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
        # Nothing may raise out of an OpenSSL callback: it would be lost.
        if not ok or depth != 0:
            return bool(ok)
        try:
            check_hostname(cert, hostname)
        except Exception as e:  # a bug here must not let a connection through either
            if not failed:
                if not isinstance(e, HostnameMismatchError):
                    e = HostnameMismatchError(f"cannot check the name ({e})")
                failed.append(Failure(e))
                fail(failed[0])
            return False
        return True

    return verify
