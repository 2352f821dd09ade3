"""
Installing sockproto makes C{twistd sockproto} appear, whether installed
normally or in editable mode, and a stale or unwritable C{dropin.cache}
does not hide it.

Each test builds a fresh virtual environment and runs pip in it, as the
README tells users to.  What pip needs (sockproto's wheel, Twisted and its
dependencies, the build backend) is fetched once per run into a wheelhouse;
each environment installs from there without the network.  Without a
package index to fetch them from, the tests skip.
"""

import atexit
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

PROJECT = Path(__file__).resolve().parent.parent


def run(command: List[str], cwd: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


_wheelhouse: Optional[Path] = None
_unavailable: Optional[str] = None


def wheelhouse() -> Path:
    """
    A folder with sockproto's wheel, built once per run, and everything
    its install and its editable build need, made on first use; skip if
    it cannot be.
    """
    global _wheelhouse, _unavailable
    if _unavailable is not None:
        raise SkipTest(_unavailable)
    if _wheelhouse is not None:
        return _wheelhouse
    where = Path(tempfile.mkdtemp(prefix="sockproto-wheelhouse-"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    fetch = run(
        pip
        + [
            "download",
            "-q",
            "-d",
            str(where),
            str(PROJECT),
            "hatchling>=1.21",
            "editables",
        ],
        str(where),
    )
    if fetch.returncode != 0:
        shutil.rmtree(where, True)
        lines = fetch.stderr.strip().splitlines()
        errors = [line for line in lines if line.lstrip().startswith("ERROR")]
        why = (errors or lines or ["?"])[0].strip()
        _unavailable = f"no package index reachable to fetch Twisted from ({why})"
        raise SkipTest(_unavailable)
    offline = ["--no-index", "--find-links", str(where)]
    build = run(
        pip + ["wheel", "-q", "--no-deps", *offline, "-w", str(where), str(PROJECT)],
        str(where),
    )
    assert build.returncode == 0, build.stderr
    atexit.register(shutil.rmtree, where, True)
    _wheelhouse = where
    return where


class FreshEnvironment:
    def __init__(self, where: str) -> None:
        self.where = where
        self.wheels = wheelhouse()
        self.bin = Path(where, "venv", "bin")
        # No pip of its own (ensurepip takes seconds): the running Python's
        # pip installs into it, with --python.
        venv = [sys.executable, "-m", "venv", "--without-pip"]
        result = run(venv + [str(Path(where, "venv"))], where)
        assert result.returncode == 0, result.stderr

    def pip_install(self, *args: str) -> None:
        command = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(self.bin / "python"),
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(self.wheels),
        ]
        result = run(command + list(args), self.where)
        assert result.returncode == 0, result.stdout + result.stderr

    def twistd(self, *args: str) -> "subprocess.CompletedProcess[str]":
        return run([str(self.bin / "twistd"), *args], self.where)

    def plugin_folder(self) -> Path:
        code = "import twisted.plugins as p; print(p.__path__[0])"
        result = run([str(self.bin / "python"), "-c", code], self.where)
        return Path(result.stdout.strip())


class InstallTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.where = tempfile.mkdtemp(prefix="sockproto-install-")
        self.addCleanup(shutil.rmtree, self.where, True)
        self.env = FreshEnvironment(self.where)

    def assertPluginWorks(self) -> None:
        listing = self.env.twistd("--help")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn("sockproto", listing.stdout)
        self.assertNotIn("Traceback", listing.stdout + listing.stderr)
        usage = self.env.twistd("sockproto", "--help")
        self.assertEqual(usage.returncode, 0, usage.stderr)
        for option in ["--echo=", "--coucou=", "--no-echo", "--no-coucou"]:
            self.assertIn(option, usage.stdout)
        echo = self.env.twistd("sockproto", "echo", "--help")
        for option in ["--listen=", "--max-connections=", "--timeout="]:
            self.assertIn(option, echo.stdout)

    def test_normal_install_with_stale_cache(self) -> None:
        # A cache written before sockproto was installed...
        self.env.pip_install("twisted")
        self.assertEqual(self.env.twistd("--help").returncode, 0)
        cache = self.env.plugin_folder() / "dropin.cache"
        self.assertTrue(cache.exists())
        self.env.pip_install("sockproto")
        self.assertPluginWorks()
        # ...and one that claims sockproto_plugin holds no plugin at all,
        # older than the plugin file.
        entries = pickle.loads(cache.read_bytes())
        entries["sockproto_plugin"].plugins = []
        cache.write_bytes(pickle.dumps(entries))
        plugin = self.env.plugin_folder() / "sockproto_plugin.py"
        past = plugin.stat().st_mtime - 3600
        os.utime(cache, (past, past))
        self.assertPluginWorks()

    def test_normal_install_with_unwritable_cache(self) -> None:
        self.env.pip_install("sockproto")
        cache = self.env.plugin_folder() / "dropin.cache"
        if cache.exists():
            cache.unlink()
        cache.mkdir()  # neither readable nor writable as a file, even as root
        self.assertPluginWorks()

    def test_editable_install(self) -> None:
        source = Path(self.where, "source")
        shutil.copytree(
            PROJECT,
            source,
            ignore=shutil.ignore_patterns(
                ".git", ".venv*", "*_cache", "_trial_temp*", "results", "*.pyc"
            ),
        )
        stale = source / "twisted" / "plugins" / "dropin.cache"
        if stale.exists():
            stale.unlink()
        self.env.pip_install("-e", str(source))
        self.assertPluginWorks()
        # An edit to the source shows without reinstalling.
        service = source / "sockproto" / "tap.py"
        service.write_text(
            service.read_text().replace("Do not run {name}", "Leave {name} out")
        )
        self.assertIn("Leave echo out", self.env.twistd("sockproto", "--help").stdout)


LOCAL = "tcp:0:interface=127.0.0.1"


class OtherPackageTests(SynchronousTestCase):
    """
    A service from a package of its own (examples/hello_service), declared
    by an entry point, is served by twistd sockproto: alone, in the
    all-in-one form, and with --workers.
    """

    def setUp(self) -> None:
        self.where = tempfile.mkdtemp(prefix="sockproto-install-")
        self.addCleanup(shutil.rmtree, self.where, True)
        self.env = FreshEnvironment(self.where)

    def serve(self, *args: str) -> None:
        import re
        import signal
        import socket
        import threading

        command = [str(self.env.bin / "twistd"), "-n", "--pidfile=", "sockproto"]
        process = subprocess.Popen(
            command + list(args),
            cwd=self.where,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        # A process that never says it listens is killed after 60 s, which
        # ends the loop (EOF): no read waits for ever.
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        self.addCleanup(watchdog.cancel)
        output = ""
        found = None
        for line in process.stdout:
            output += line
            found = re.search(r"hello\S* listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                break
        watchdog.cancel()
        self.assertIsNotNone(found, output)
        assert found is not None
        for n in range(3):
            with socket.create_connection(("127.0.0.1", int(found.group(1))), 10) as s:
                s.settimeout(10)
                s.sendall(b"world %d\n" % n)
                answer = b""
                while not answer.endswith(b"\n"):
                    answer += s.recv(100)
            self.assertEqual(answer, b"hello, world %d\r\n" % n)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        output += rest
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)

    def test_a_service_from_another_package_is_served(self) -> None:
        self.env.pip_install("sockproto")
        self.env.pip_install(str(PROJECT / "examples" / "hello_service"))
        usage = self.env.twistd("sockproto", "--help")
        self.assertIn("--hello=", usage.stdout)
        self.assertIn("Run only hello", usage.stdout)
        help = self.env.twistd("sockproto", "hello", "--help")
        for option in ["--listen=", "--max-per-peer=", "--workers=", "--timeout="]:
            self.assertIn(option, help.stdout)
        self.serve("hello", "--listen", LOCAL, "--max-per-peer", "8")
        self.serve("--no-chat", "--no-echo", "--no-coucou", "--hello", LOCAL)
        self.serve("hello", "--listen", LOCAL, "--workers", "2")
