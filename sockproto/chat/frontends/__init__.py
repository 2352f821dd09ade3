"""
The chat's front ends: each speaks one wire protocol to its clients (lines
for nc and telnet, a page and JSON over WebSocket, IRC) and hands what they
say to a transport-free L{ChatSession}.  A front end imports the chat's
core, never a back end.
"""
