"""
Deprecated: sockproto.base is now
sockproto.server.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .server import *  # noqa: F403
from .server import __all__ as _server_all

__all__ = list(_server_all)

warnings.warn(
    "sockproto.base is deprecated: import from sockproto.server",
    DeprecationWarning,
    stacklevel=2,
)
