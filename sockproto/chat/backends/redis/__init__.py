"""
The shared back end: rooms and nicknames in Redis, for several processes
and machines.

- C{resp}: the Redis client (RESP) and the link (two connections,
  reconnecting);
- C{store}: what is kept in Redis, the only module knowing key names and
  Lua scripts;
- C{wire}: the format of a batch on a room's channel;
- C{feed}: the order of a room's numbered messages (pure state);
- C{stream}: what comes from the broker for one room: looked up in the
  room's stream, put in order, backfilled, epochs;
- C{room}: a shared room, containing an in-process one, and its stream;
- C{presence}: the life of a process's link: going alone, heartbeats,
  reaping, coming back;
- C{server}: the shared server, containing an in-process one and its
  presence, and the service that runs its link.
"""

from .server import BrokerService, RedisChatServer

__all__ = ["BrokerService", "RedisChatServer"]
