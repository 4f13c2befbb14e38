"""Can a SQLite writer thread overlap with the simulation's Python? (No: the GIL.)

A worker thread inserts rows into an in-memory table for one second, first alone, then
beside a thread running a pure-Python loop (what the simulation kernel does during a
virtual instant). The ratio is inserts beside / inserts alone. It is why the kernel's
saves are not streamed into an open transaction while an instant runs
(docs/performance.md, "Not done"). Not part of run_all.py: one number, a few seconds.

    .venv/bin/python bench/gil_overlap.py
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time

SECONDS = 1.0


def inserts_alone() -> int:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c)")
    n = 0
    end = time.perf_counter() + SECONDS
    while time.perf_counter() < end:
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (n, "x" * 50, n))
        n += 1
    return n


def inserts_beside_python() -> int:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE t (a, b, c)")
    stop = threading.Event()
    count = [0]

    def writer() -> None:
        n = 0
        while not stop.is_set():
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", (n, "x" * 50, n))
            n += 1
        count[0] = n

    thread = threading.Thread(target=writer)
    thread.start()
    x = 0
    end = time.perf_counter() + SECONDS
    while time.perf_counter() < end:
        for i in range(1000):
            x += i * i
    stop.set()
    thread.join()
    return count[0]


def main() -> int:
    alone = inserts_alone()
    beside = inserts_beside_python()
    print(f"switch interval {sys.getswitchinterval() * 1000:.0f} ms")
    print(f"inserts in {SECONDS:.0f} s, writer thread alone:          {alone:>9,}")
    print(f"inserts in {SECONDS:.0f} s, beside a busy Python thread:  {beside:>9,}")
    print(f"ratio beside / alone: {beside / alone:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
