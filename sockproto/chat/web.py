"""
Deprecated: sockproto.chat.web is now
sockproto.chat.frontends.web.protocol.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .frontends.web.protocol import *  # noqa: F403
from .frontends.web.protocol import __all__ as _frontends_web_protocol_all

__all__ = list(_frontends_web_protocol_all)

warnings.warn(
    "sockproto.chat.web is deprecated:"
    " import from sockproto.chat.frontends.web.protocol",
    DeprecationWarning,
    stacklevel=2,
)
