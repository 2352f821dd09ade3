"""
A coucou server that keeps the messages it receives, newest last, instead of
printing them, and answers each with "merci".
"""

from typing import List

from sockproto.coucou import CoucouServerFactory, CoucouServerProtocol


class KeepingCoucouProtocol(CoucouServerProtocol):
    def messageReceived(self, message: str) -> None:
        self.factory.kept.append((self.peer, message))  # type: ignore[attr-defined]
        self.transport.write(b"merci\n")


class KeepingCoucouFactory(CoucouServerFactory):
    protocol = KeepingCoucouProtocol

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.kept: List[tuple] = []
