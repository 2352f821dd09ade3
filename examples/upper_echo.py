"""
An echo that shouts back: every letter comes back in upper case.
"""

from sockproto.echo import EchoFactory, EchoProtocol


class UpperEchoProtocol(EchoProtocol):
    def transform(self, data: bytes) -> bytes:
        return data.upper()


class UpperEchoFactory(EchoFactory):
    protocol = UpperEchoProtocol
