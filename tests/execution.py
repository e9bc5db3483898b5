"""Helpers for the tests that really execute pipelines (kfp.local via the sandbox executor).

Those tests are marked `execute`: each takes tens of seconds, because every task of a lightweight component
creates a virtual environment and pip-installs the kfp version that compiled it (2.16.1 or 2.17.0). They skip
with a clear reason when pip cannot fetch those versions (no PyPI and no local index/wheels)."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time

import pytest

# The versions pinned by the fixtures' components: qoe_train_v2.yaml (2.16.1), the ones compiled here (2.17.0) and
# resource_setters_v2.yaml (2.17.3).
PINNED_KFP = ("kfp==2.16.1", "kfp==2.17.0", "kfp==2.17.3")


@functools.lru_cache(maxsize=None)
def kfp_local_unavailable() -> str | None:
    """None when pip can fetch every pinned kfp (it then sits in pip's cache), else the reason."""
    with tempfile.TemporaryDirectory() as dest:
        for req in PINNED_KFP:
            try:
                done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest",
                                       dest, req], capture_output=True, text=True, timeout=180)
            except subprocess.TimeoutExpired:
                return f"pip could not fetch {req} within 180 s (PyPI unreachable?)"
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                return f"pip cannot fetch {req} (PyPI unreachable?): {lines[-1] if lines else done.returncode}"
    return None


def require_kfp_local() -> None:
    """Skip the calling test when the components' pip installs cannot work here."""
    reason = kfp_local_unavailable()
    if reason:
        pytest.skip(f"real pipeline execution needs PyPI: {reason}")


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def running_in_group(pgid: int, needle: str) -> bool:
    """Whether a live member of the process group has `needle` in its command line."""
    for pid in process_group_members(pgid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle.encode() in fh.read():
                    return True
        except OSError:
            continue
    return False


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
