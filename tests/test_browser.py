"""
End to end in a real browser: Debian's headless Chromium, driven by
selenium through Debian's chromedriver, against C{twistd -n sockproto chat
--web ...} started as a user starts it.  Two browser sessions and one
line client (as nc) talk in one room.

Selenium's calls block, so each runs in a thread (C{deferToThread}): the
reactor goes on serving the line client meanwhile.
"""

import os
import re
import shutil
import tempfile
from typing import Any, Callable, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from sockproto.testing import (
    connect_line_client,
    start_twistd,
    temporary_directory,
)

CHROMIUM = os.environ.get("SOCKPROTO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SOCKPROTO_CHROMEDRIVER", "/usr/bin/chromedriver")
MISSING = (
    "needs Debian's chromium and chromium-driver (apt-get install chromium"
    " chromium-driver) and selenium (pip install -e '.[test]')"
)
LOCAL = "tcp:0:interface=127.0.0.1"


def browser_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER))


class Browser:
    """
    One headless Chromium with its own profile, and the page's controls.
    """

    def __init__(self, profile: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1000,640",
            f"--user-data-dir={profile}",
        ]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(
            service=Service(executable_path=CHROMEDRIVER), options=options
        )

    def quit(self) -> None:
        self.driver.quit()

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait(self, condition: Callable[[Any], Any], timeout: float = 15.0) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)

    def status(self) -> str:
        return self.driver.find_element("id", "status").get_attribute("data-state")

    def connected(self) -> None:
        self.wait(lambda d: self.status() == "connected" and self.nick())

    def nick(self) -> str:
        value = self.driver.find_element("id", "nick").get_attribute("value")
        return value or ""

    def type(self, text: str) -> None:
        """
        Type C{text} in the input and press Enter, with the keyboard alone.
        """
        from selenium.webdriver.common.keys import Keys

        box = self.driver.find_element("id", "say")
        box.send_keys(text + Keys.ENTER)

    def setNick(self, nick: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.driver.find_element("id", "nick")
        box.clear()
        box.send_keys(nick + Keys.ENTER)

    def lines(self, kind: str = "") -> List[str]:
        selector = "#log li" + (f".{kind}" if kind else "")
        items = self.driver.find_elements("css selector", selector)
        # Without the time stamp each line starts with.
        return [re.sub(r"^\d\d:\d\d\s*", "", item.text) for item in items]

    def seen(self, text: str) -> Any:
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait(lambda d: any(text in line for line in self.lines()))
        except TimeoutException:
            raise AssertionError(f"{text!r} not among {self.lines()}") from None

    def alertShown(self) -> bool:
        from selenium.common.exceptions import NoAlertPresentException

        try:
            self.driver.switch_to.alert.text  # noqa: B018
        except NoAlertPresentException:
            return False
        return True


class BrowserTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        if not browser_available():
            raise SkipTest(MISSING)
        self.directory = temporary_directory(self)

    @inlineCallbacks
    def startServer(self, web: str = LOCAL) -> Any:
        args = ["chat", "--listen", LOCAL, "--web", web]
        process = yield start_twistd(args, ["chat", "web"], cwd=self.directory)
        self.addCleanup(lambda: None if process.ended.called else process.stop("KILL"))
        return process

    @inlineCallbacks
    def browser(self) -> Any:
        profile = tempfile.mkdtemp(prefix="sockproto-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        browser = yield deferToThread(Browser, profile)
        self.addCleanup(deferToThread, browser.quit)
        return browser

    def inThread(self, f: Callable[..., Any], *args: Any) -> Any:
        return deferToThread(f, *args)

    @inlineCallbacks
    def test_two_browsers_and_nc_in_one_room(self) -> Any:
        server = yield self.startServer()
        host, port = server.address("web")
        url = f"http://{host}:{port}/"
        alice = yield self.browser()
        bob = yield self.browser()
        for browser in (alice, bob):
            yield self.inThread(browser.open, url)
            yield self.inThread(browser.connected)
        nc = yield connect_line_client(
            TCP4ClientEndpoint(reactor, *server.address("chat"))
        )
        self.addCleanup(nc.transport.loseConnection)
        yield nc.expect("you are in #lobby")

        yield self.inThread(alice.type, "/nick alice")  # a command typed in the input
        yield nc.expect("is now known as alice")
        yield self.inThread(bob.setNick, "bob")  # the nick box
        yield nc.expect("is now known as bob")

        # One order for everyone.
        yield self.inThread(alice.type, "one")
        yield nc.expect("<alice> one")
        nc.send("two")
        yield self.inThread(bob.seen, "two")
        yield self.inThread(bob.type, "three")
        yield nc.expect("<bob> three")
        for browser in (alice, bob):
            yield self.inThread(browser.seen, "<bob> three")
            said = [
                line
                for line in browser.lines("line")
                if line.endswith(("one", "two", "three"))
            ]
            self.assertEqual(
                [line.rsplit(" ", 1)[1] for line in said], ["one", "two", "three"]
            )

        # Text is text.
        nc.send(
            "<script>alert(1)</script> <img src=x onerror=alert(2)>"
            " [x](javascript:alert(3))"
        )
        yield self.inThread(alice.seen, "<script>alert(1)</script>")
        self.assertFalse(alice.alertShown())
        images = alice.driver.find_elements(
            "css selector", "#log img, #log script, #log a"
        )
        self.assertEqual(images, [])

        # /msg and /join from the browser.
        yield self.inThread(alice.type, "/msg bob psst")
        yield self.inThread(
            bob.wait, lambda d: any("psst" in line for line in bob.lines("private"))
        )
        screenshot = os.path.join(self.directory, "chat.png")
        yield self.inThread(bob.driver.save_screenshot, screenshot)
        keep = os.environ.get("SOCKPROTO_SCREENSHOT")
        if keep:
            shutil.copyfile(screenshot, keep)
        # A phone-sized screen: nothing wider than it.
        yield self.inThread(alice.driver.set_window_size, 390, 800)
        overflow = yield self.inThread(
            alice.driver.execute_script,
            "return document.documentElement.scrollWidth - window.innerWidth",
        )
        self.assertLessEqual(overflow, 0)
        yield self.inThread(alice.type, "/join #web")
        yield self.inThread(
            alice.wait,
            lambda d: d.find_element("id", "room-title").text == "#web",
        )
        yield nc.expect("alice left #lobby")

        # The server restarts: the pages reconnect by themselves, as alice.
        status = yield server.stop("TERM")
        self.assertEqual(status, 0)
        yield self.inThread(alice.wait, lambda d: alice.status() == "reconnecting")
        self.assertIn("reconnecting", alice.driver.find_element("id", "status").text)
        yield self.startServer(web=f"tcp:{port}:interface=127.0.0.1")
        yield self.inThread(alice.wait, lambda d: alice.status() == "connected", 30)
        yield self.inThread(alice.wait, lambda d: alice.nick() == "alice", 15)
        yield self.inThread(
            alice.wait,
            lambda d: d.find_element("id", "room-title").text == "#web",
        )
