"""
The C{twistd sockproto} plugin.  No C{__init__.py} here or in C{twisted/}:
this file is a drop-in for Twisted's own C{twisted.plugins} package.  It
imports nothing of sockproto: C{sockproto.tap} is loaded when the command
runs.
"""

from twisted.application.service import ServiceMaker

sockproto = ServiceMaker(
    "sockproto",
    "sockproto.tap",
    "Echo, coucou and chat: the sockets course as Twisted services.",
    "sockproto",
)
