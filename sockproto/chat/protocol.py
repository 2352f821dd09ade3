"""
Deprecated: sockproto.chat.protocol is now
sockproto.chat.frontends.line.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .frontends.line import *  # noqa: F403
from .frontends.line import __all__ as _frontends_line_all

__all__ = list(_frontends_line_all)

warnings.warn(
    "sockproto.chat.protocol is deprecated: import from sockproto.chat.frontends.line",
    DeprecationWarning,
    stacklevel=2,
)
