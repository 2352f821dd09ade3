"""
The shared back end: rooms and nicknames in Redis, for several processes
and machines.

- C{resp}: the Redis client (RESP) and the link (two connections,
  reconnecting);
- C{store}: what is kept in Redis, the only module knowing key names and
  Lua scripts;
- C{wire}: the format of a batch on a room's channel;
- C{feed}: the order of a room's numbered messages (pure state);
- C{room}: a shared room, containing an in-process one;
- C{server}: the shared server, containing an in-process one, and the
  service that runs its link.
"""

from .server import BrokerService, RedisChatServer

__all__ = ["BrokerService", "RedisChatServer"]
