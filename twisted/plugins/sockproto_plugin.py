"""
The C{twistd sockproto} plugin.  No C{__init__.py} here or in C{twisted/}:
this file is a drop-in for Twisted's own C{twisted.plugins} package.
"""

from sockproto.service import SockprotoServiceMaker

sockproto = SockprotoServiceMaker()
