"""Headless chromium driven through the DevTools protocol, for the API page's tests: a person's
clicks and typing, as JavaScript run in the page."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect


class Browser:
    def __init__(self, url: str, profile: Path) -> None:
        chromium = shutil.which("chromium")
        assert chromium, "Debian's chromium is needed: apt-get install -y chromium"
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1280,900", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._ids = itertools.count(1)
        try:
            port = self._port(profile / "DevToolsActivePort")
            pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                     if t["type"] == "page"]
            self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        except BaseException:
            self.close()
            raise

    def _port(self, file: Path, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if file.is_file() and (first := file.read_text().split("\n", 1)[0]).isdigit():
                return int(first)
            time.sleep(0.1)
        raise AssertionError("chromium did not open its DevTools port")

    def run(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        number = next(self._ids)
        self.ws.send(json.dumps({"id": number, "method": "Runtime.evaluate", "params": {
            "expression": expression, "returnByValue": True, "awaitPromise": True}}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == number:
                result = message["result"]
                assert "exceptionDetails" not in result, result["exceptionDetails"]
                return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 20.0) -> Any:
        """Run `expression` until it is truthy."""
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        while True:
            value = self.run(guarded)
            if value or time.monotonic() > deadline:
                assert value, f"never true: {expression}"
                return value
            time.sleep(0.1)

    def click(self, selector: str) -> None:
        self.wait(f"!!document.querySelector({json.dumps(selector)})")
        self.run(f"document.querySelector({json.dumps(selector)}).click()")

    def type(self, selector: str, text: str) -> None:
        """Set an input's value as typing does (React sees the change)."""
        self.wait(f"!!document.querySelector({json.dumps(selector)})")
        self.run(f"""(() => {{
            const field = document.querySelector({json.dumps(selector)});
            const proto = Object.getPrototypeOf(field);
            Object.getOwnPropertyDescriptor(proto, "value").set.call(field, {json.dumps(text)});
            field.dispatchEvent(new Event("input", {{bubbles: true}}));
            field.dispatchEvent(new Event("change", {{bubbles: true}}));
        }})()""")

    def text(self) -> str:
        return self.run("document.body.innerText")

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
