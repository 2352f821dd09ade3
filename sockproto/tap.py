# -*- test-case-name: tests.test_service -*-
"""
C{twistd sockproto}: what the plugin loads, only when that command runs.
The plugin file itself (C{twisted/plugins/sockproto_plugin.py}) names this
module without importing it, so that other twistd commands, and
C{twistd --help}, never import sockproto.
"""

from .service import Options, makeService

__all__ = ["Options", "makeService"]
