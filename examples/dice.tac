# The dice chat of examples/chat_roll.py, served from a .tac file:
#     PYTHONPATH=examples twistd -n --pidfile= -y examples/dice.tac
# It listens on $DICE_LISTEN (default tcp:12347). ProtocolService closes
# the port and tells every client "server shutting down" when twistd stops.
import os

from chat_roll import DiceChatFactory
from twisted.application import service

from sockproto.service import ProtocolService

application = service.Application("dice chat")
listen = os.environ.get("DICE_LISTEN", "tcp:12347")
ProtocolService.listening(DiceChatFactory(), listen).setServiceParent(application)
