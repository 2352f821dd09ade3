"""
The same raw IRC sessions against sockproto's IRC front end, Debian's
ngIRCd and Debian's InspIRCd: what each answers, side by side, as the
table in the README's IRC section.

    python benchmarks/irc_compare.py [--markdown] [--servers sockproto,ngIRCd,InspIRCd]

Each server runs on 127.0.0.1, on a free port, from a configuration this
script writes to a temporary folder; a server that is not installed is
left out (apt-get install ngircd inspircd).  Each probe registers a fresh
client (CAP LS 302, NICK, USER, CAP END), waits for the end of the welcome,
sends its lines, then a PING whose PONG closes what it got: the commands
and numerics of the replies, in order, without repeats.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))

# label, lines sent once registered ("{peer}" is another client's nick, in
# #lobby with this one).
PROBES: List[Tuple[str, List[str]]] = [
    ("JOIN #lobby", ["JOIN #lobby"]),
    ("PRIVMSG with no text", ["PRIVMSG {peer} :"]),
    ("PRIVMSG with no target", ["PRIVMSG"]),
    ("NOTICE to nobody", ["NOTICE nobody123 :hi"]),
    ("PING with no token", ["PING"]),
    ("TOPIC of no channel", ["TOPIC #nosuchroom"]),
    ("MODE #lobby +m", ["JOIN #lobby", "MODE #lobby +m"]),
    ("MODE own +i", ["MODE {me} +i"]),
    ("WHOIS someone", ["WHOIS {peer}"]),
    ("WHOIS nobody", ["WHOIS nobody123"]),
    ("WHOWAS nobody", ["WHOWAS nobody123"]),
    ("WHO nick", ["WHO {peer}"]),
    ("WHO #lobby", ["JOIN #lobby", "WHO #lobby"]),
    ("NAMES #lobby", ["JOIN #lobby", "NAMES #lobby"]),
    ("LIST", ["LIST"]),
    ("INVITE", ["JOIN #inv{n}", "INVITE {peer} #inv{n}"]),
    ("AWAY then back", ["AWAY :out", "AWAY"]),
    ("USERHOST", ["USERHOST {peer}"]),
    ("ISON", ["ISON {peer} nobody123"]),
    ("LUSERS", ["LUSERS"]),
    ("TIME", ["TIME"]),
    ("MOTD", ["MOTD"]),
    ("VERSION", ["VERSION"]),
    ("INFO", ["INFO"]),
    ("ADMIN", ["ADMIN"]),
    ("OPER", ["OPER x y"]),
    ("unknown command", ["FROBNICATE"]),
    ("AUTHENTICATE after registering", ["AUTHENTICATE PLAIN"]),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # a server starting: nothing to wait on but time
    raise RuntimeError(f"nothing listens on port {port}")


class Client:
    """A raw IRC connection, read line by line."""

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.nick = nick
        self.send("CAP LS 302", f"NICK {nick}", f"USER {nick} 0 * :{nick}", "CAP END")
        self.until(lambda c: c in ("376", "422"))

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def line(self) -> str:
        while b"\r\n" not in self.buffer and b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data
        line, _, self.buffer = self.buffer.replace(b"\r\n", b"\n").partition(b"\n")
        return line.decode("utf-8", "replace")

    def until(self, done: "object") -> List[str]:
        got = []
        while True:
            line = self.line()
            words = line.split()
            if words and words[0].startswith("@"):
                words = words[1:]
            if words and words[0] == "PING":
                self.send("PONG " + " ".join(words[1:]))
                continue
            command = words[1] if words and words[0].startswith(":") else words[0]
            got.append(command)
            if done(command):  # type: ignore[operator]
                return got

    def probe(self, lines: Sequence[str]) -> List[str]:
        self.send(*lines, "PING :probe-done")
        got = self.until(lambda c: c == "PONG")[:-1]
        seen: List[str] = []
        for command in got:
            if command not in seen:
                seen.append(command)
        return seen

    def close(self) -> None:
        try:
            self.send("QUIT :done")
        finally:
            self.sock.close()


def start_sockproto(folder: str, port: int) -> subprocess.Popen:  # type: ignore[type-arg]
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    command = [twistd, "-n", "--pidfile=", "--logfile", os.path.join(folder, "sp.log")]
    command += ["sockproto", "chat", "--listen", "tcp:0:interface=127.0.0.1"]
    command += ["--irc", f"tcp:{port}:interface=127.0.0.1", "--rate-limit", "0"]
    return subprocess.Popen(command, cwd=folder)


NGIRCD = """[Global]
Name = ngircd.test
Info = ngIRCd for irc_compare.py
Listen = 127.0.0.1
Ports = {port}
PidFile = {folder}/ngircd.pid
MotdPhrase = hello
[Limits]
MaxConnectionsIP = 0
[Options]
PAM = no
Ident = no
DNS = no
"""

INSPIRCD = """<server name="inspircd.test" description="irc_compare.py" network="test">
<admin name="nobody" nick="nobody" email="nobody@inspircd.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect allow="*" timeout="60" pingfreq="120" hardsendq="1M" softsendq="8192"
         recvq="8K" threshold="1000" commandrate="100000" fakelag="no"
         localmax="100" globalmax="100" useident="no">
<options>
<security>
<dns timeout="1">
<log method="file" type="*" level="default" target="{folder}/inspircd.log">
<module name="cap">
<module name="ircv3">
<module name="ircv3_capnotify">
<module name="ircv3_echomessage">
<module name="ircv3_servertime">
<module name="ircv3_batch">
<module name="namesx">
<module name="uhnames">
"""


def start_ngircd(folder: str, port: int) -> Optional[subprocess.Popen]:  # type: ignore[type-arg]
    if shutil.which("ngircd") is None:
        return None
    path = os.path.join(folder, "ngircd.conf")
    with open(path, "w") as f:
        f.write(NGIRCD.format(port=port, folder=folder))
    out = open(os.path.join(folder, "ngircd.out"), "wb")  # noqa: SIM115
    return subprocess.Popen(["ngircd", "-n", "-f", path], stdout=out, stderr=out)


def start_inspircd(folder: str, port: int) -> Optional[subprocess.Popen]:  # type: ignore[type-arg]
    if shutil.which("inspircd") is None:
        return None
    path = os.path.join(folder, "inspircd.conf")
    with open(path, "w") as f:
        f.write(INSPIRCD.format(port=port, folder=folder))
    out = open(os.path.join(folder, "inspircd.out"), "wb")  # noqa: SIM115
    command = ["inspircd", "--config", path, "--nofork", "--nopid", "--runasroot"]
    return subprocess.Popen(command, stdout=out, stderr=out)


def run(name: str, port: int) -> Dict[str, List[str]]:
    answers: Dict[str, List[str]] = {}
    peer = Client(port, "peer1")
    peer.probe(["JOIN #lobby"])
    for number, (label, lines) in enumerate(PROBES):
        client = Client(port, f"probe{number}")
        fields = {"me": client.nick, "peer": peer.nick, "n": number}
        try:
            answers[label] = client.probe([line.format(**fields) for line in lines])
        except socket.timeout:
            answers[label] = ["(no answer in 10 s)"]
        except OSError as e:
            answers[label] = [f"({e.__class__.__name__})"]
        finally:
            client.close()
    peer.close()
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument(
        "--servers",
        default="sockproto,ngIRCd,InspIRCd",
        help="which servers, comma-separated (default: all three)",
    )
    options = parser.parse_args()
    chosen = options.servers.split(",")
    folder = tempfile.mkdtemp(prefix="irc-compare-")
    servers = [
        ("sockproto", start_sockproto),
        ("ngIRCd", start_ngircd),
        ("InspIRCd", start_inspircd),
    ]
    results: Dict[str, Dict[str, List[str]]] = {}
    for name, start in servers:
        if name not in chosen:
            continue
        port = free_port()
        process = start(folder, port)
        if process is None:
            print(f"{name}: not installed, left out", file=sys.stderr)
            continue
        try:
            wait_for_port(port)
            results[name] = run(name, port)
        finally:
            process.terminate()
            process.wait(10)
    names = list(results)
    if options.markdown:
        print("| sent | " + " | ".join(names) + " |")
        print("| --- |" + " --- |" * len(names))
        for label, _ in PROBES:
            cells = [" ".join(results[n][label]) or "(nothing)" for n in names]
            print(f"| {label} | " + " | ".join(cells) + " |")
    else:
        for label, _ in PROBES:
            print(
                f"{label:34}",
                " | ".join(f"{n}: {' '.join(results[n][label]) or '-'}" for n in names),
            )
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
