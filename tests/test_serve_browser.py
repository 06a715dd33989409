"""The web page in a real browser: headless Chromium uploads a PDF and an image, the test reads
the text off the page.

Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` (JSON messages
separated by NUL bytes on file descriptors 3 and 4): no driver binary and no Python package.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

import test_infer_pipeline as support
from vary.inference import GenerationOptions, PageSelection, VaryPipeline
from vary.inference.server import ServerLimits, create_app, running_server

one_thread = support.one_thread
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/apt-packages.txt)")
OPTIONS = GenerationOptions(max_new_tokens=8)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


class DevTools:
    """A minimal DevTools-protocol client over Chromium's pipe transport."""

    def __init__(self, to_browser: int, from_browser: int, timeout: float = 20.0):
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.timeout = timeout
        self.buffer = b""
        self.next_id = 0

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:  # events arrive in between: skip them
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_browser], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(self.from_browser, 1 << 16) if ready else b""
            if not chunk:
                raise TimeoutError("no answer from the browser")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(session, expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}")
            time.sleep(0.05)
        return value


@contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    # Our pipe ends sit at fd >= 10, so bash can map them to 3 and 4 without clobbering (dash
    # cannot redirect fds over 9).
    browser_reads, we_write = os.pipe()
    we_read, browser_writes = os.pipe()
    child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (browser_reads, browser_writes))
    shell = f'exec "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-'
    flags = [*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
    process = subprocess.Popen(
        ["bash", "-c", shell, "bash", CHROMIUM, *flags],
        pass_fds=(child_in, child_out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for fd in (browser_reads, browser_writes, child_in, child_out):
        os.close(fd)
    devtools = DevTools(we_write, we_read)
    try:
        yield devtools
    finally:
        with suppress(OSError, RuntimeError, TimeoutError):
            devtools.send("Browser.close")
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.close(we_write)
        os.close(we_read)


def upload_and_read(devtools: DevTools, session: str, path: Path, pages: str = "") -> list[str]:
    """Choose a file in the page's file input; return the text of each page shown."""
    devtools.evaluate(session, f"document.getElementById('pages').value = {json.dumps(pages)}")
    devtools.evaluate(session, "document.body.dataset.state = 'idle'")
    root = devtools.send("DOM.getDocument", session)["root"]["nodeId"]
    node = devtools.send("DOM.querySelector", session, nodeId=root, selector="#file")["nodeId"]
    devtools.send("DOM.setFileInputFiles", session, nodeId=node, files=[str(path)])
    state = devtools.wait_for(
        session, "['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state"
    )
    status = devtools.evaluate(session, "document.getElementById('status').textContent")
    assert state == "done", status
    return devtools.evaluate(session, "[...document.querySelectorAll('#result pre')].map(p => p.textContent)")


def test_upload_in_a_browser(tmp_path):
    pipeline = VaryPipeline.from_pretrained(support.saved_model("base"))
    pdf = support.make_pdf(tmp_path / "doc.pdf", [31, 32, 33])
    image = tmp_path / "scan.png"
    support.noise(34).save(image)
    app = create_app(pipeline, ServerLimits(batch_size=4), OPTIONS)
    with running_server(app) as url, chromium(tmp_path / "profile") as devtools:
        target = devtools.send("Target.createTarget", url=url)["targetId"]
        session = devtools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        devtools.wait_for(session, "document.getElementById('model').textContent.startsWith('model base')")

        expected = pipeline(pdf, pages=PageSelection.parse("2-3"), options=OPTIONS)
        assert upload_and_read(devtools, session, pdf, pages="2-3") == [r.text for r in expected]
        assert upload_and_read(devtools, session, image) == [pipeline(image, options=OPTIONS).text]
        titles = devtools.evaluate(
            session, "[...document.querySelectorAll('#result h2')].map(h => h.textContent)"
        )
        assert titles[0].startswith("scan.png · ")
