"""Redraw the pictures the README shows (``docs/images/``), the way a user makes them.

    .venv/bin/python docs/pictures.py

* ``swimlanes.png``: ``turnsim run scenarios/inflight_switch.yaml --variant
  late-snapshot-runtime --log-file run.jsonl`` then ``turnsim logs run.jsonl --plot``;
* ``web-conversation.png``: ``turnsim run scenarios/ --db run.db``, ``turnsim serve --db
  run.db``, and a conversation's page in headless Chromium (Debian's ``chromium``).

The swimlanes are the same bytes on every machine; a screenshot depends on the fonts.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
TURNSIM = [sys.executable, "-m", "sim"]


def turnsim(*args: str) -> None:
    done = subprocess.run([*TURNSIM, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: the run failed, as the bug variant should
        sys.exit(f"turnsim {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def swimlanes(work: Path) -> Path:
    log = work / "run.jsonl"
    turnsim(
        "run",
        "scenarios/inflight_switch.yaml",
        "--variant",
        "late-snapshot-runtime",
        "--log-file",
        str(log),
    )
    out = IMAGES / "swimlanes.png"
    turnsim("logs", str(log), "--plot", str(out))
    return out


def web_page(work: Path) -> Path:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium on the PATH: apt-get install -y chromium")
    db = work / "run.db"
    turnsim("run", "scenarios/", "--db", str(db))
    server = subprocess.Popen(
        [*TURNSIM, "serve", "--db", str(db), "--port", "0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    url = ""
    for line in server.stderr:
        found = re.search(r"serving .* at (http://\S+) ", line)
        if found:
            url = found.group(1)
            break
    threading.Thread(target=lambda: [None for _ in server.stderr or ()], daemon=True).start()
    out = IMAGES / "web-conversation.png"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1000, "height": 560})
            page.goto(f"{url}ui/conversations/switch-back-and-forth.c1")
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    return out


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for made in (swimlanes(Path(work)), web_page(Path(work))):
            print(f"wrote {made.relative_to(ROOT)} ({made.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
