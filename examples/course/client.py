"""
The course's client.ml in Python, with plain sockets: resolve the host with
gethostbyname, connect, write "coucou", close.

    python examples/course/client.py HOST PORT [MESSAGE]
"""

import socket
import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    message = sys.argv[3] if len(sys.argv) > 3 else "coucou"
    address = socket.gethostbyname(host)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect((address, port))
    client.sendall(message.encode("utf-8"))
    client.close()


if __name__ == "__main__":
    main()
