"""Per-process temporary directories: swept once their owner died (even by kill -9), never while it lives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from kfadapter.core import tempdirs

_OWNER = """
import os, sys, tempfile
tempfile.tempdir = sys.argv[1]
from kfadapter.core import tempdirs
print(tempdirs.owned_dir("kfadapter-upload-"), flush=True)
sys.stdin.read()
"""


def _owner(tmp_path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_live_owners_directory_stays_and_a_killed_ones_goes(tmp_path):
    live, live_dir = _owner(tmp_path)
    dead, dead_dir = _owner(tmp_path)
    os.kill(dead.pid, signal.SIGKILL)
    dead.communicate(timeout=10)
    try:
        assert tempdirs.sweep("kfadapter-upload-", str(tmp_path)) == [dead_dir]
        assert os.path.isdir(live_dir) and not os.path.exists(dead_dir)
    finally:
        live.communicate(timeout=10)
    assert tempdirs.sweep("kfadapter-upload-", str(tmp_path)) == [live_dir]  # it ended: its lock is free


def test_directories_without_a_lock_file_are_left_alone(tmp_path):
    foreign = tmp_path / "kfadapter-upload-legacy"
    foreign.mkdir()
    os.utime(foreign, (0, 0))  # however old
    assert tempdirs.sweep("kfadapter-upload-", str(tmp_path)) == []
    assert foreign.is_dir()


def test_this_process_keeps_its_own_directory(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with tempdirs.package_file(b"kind: Workflow\n", ".yaml") as path:
        assert path.endswith("/pipeline.yaml") and Path(path).read_bytes() == b"kind: Workflow\n"
        assert tempdirs.sweep("kfadapter-upload-", str(tmp_path)) == []
    assert not os.path.exists(path)
    assert tempdirs.sweep("kfadapter-upload-", str(tmp_path)) == []
