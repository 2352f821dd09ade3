"""
The course's server.ml in Python, with plain sockets: bind, listen, accept
one client, read up to 140 bytes once, print them, close.

    python examples/course/server.py [PORT]     (default 12345; 0 = any)

It prints "listening on PORT" first, so a test can find the port.
"""

import socket
import sys


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 12345
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("", port))  # any interface
    server.listen(20)
    print(
        "listening on", server.getsockname()[1], "of", socket.gethostname(), flush=True
    )
    client, _ = server.accept()
    message = client.recv(140)
    print(message.decode("utf-8", "replace"), flush=True)
    client.close()
    server.close()


if __name__ == "__main__":
    main()
