"""
The chat's back ends: where nicknames and rooms live, behind
L{IChatServer} and L{IChatRoom}, every answer a Deferred.  C{memory}: in
this process; C{redis}: shared by every process that uses one Redis.  A back
end imports the chat's core, never a front end.
"""
