"""
sockproto: the classic sockets course, as ready-made Twisted services.

echo (RFC 862), coucou (the course's message service) and chat, each a
Protocol and a Factory to subclass, served by the ``twistd sockproto``
plugin and driven from the ``sockproto`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
