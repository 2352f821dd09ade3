"""
The shared back end: rooms and nicknames in Redis, for several processes
and machines.  C{resp}: the Redis client (RESP); C{wire}: the format of a
batch on a room's channel; C{shared}: the server and its rooms.
"""
