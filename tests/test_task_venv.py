"""Executed tasks' environments (sandbox/task_venv.py): each task a fresh copy of one prepared environment."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from kfadapter.sandbox import task_venv


def _fake_prepared(monkeypatch, tmp_path: Path) -> Path:
    """A prepared environment in a private cache, made by hand (the real one needs pip and PyPI)."""
    monkeypatch.setenv("KFADAPTER_SANDBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(task_venv, "_process_template", None)
    prepared = task_venv.prepared_path()
    (prepared / "bin").mkdir(parents=True)
    (prepared / "bin" / "python").symlink_to(sys.executable)
    (prepared / "lib").mkdir()
    (prepared / "lib" / "marker.txt").write_text("as prepared\n")
    (prepared / ".kfadapter-ready").write_text("ok\n")
    return prepared


def test_each_task_gets_a_fresh_copy_and_the_prepared_one_is_never_written(monkeypatch, tmp_path):
    prepared = _fake_prepared(monkeypatch, tmp_path)
    monkeypatch.setattr(task_venv, "prepare", lambda path: (_ for _ in ()).throw(AssertionError("rebuilt")))
    seen = []
    for _ in range(2):
        with task_venv.fresh_copy() as python:
            copy = Path(python).parent.parent
            seen.append(copy)
            assert copy != prepared and os.path.realpath(python) == os.path.realpath(sys.executable)
            assert (copy / "lib" / "marker.txt").read_text() == "as prepared\n"
            assert not (copy / ".kfadapter-ready").exists()
            (copy / "lib" / "marker.txt").write_text("a task's pip install\n")  # what a component does to its copy
            (copy / "lib" / "kfp").mkdir()
    assert seen[0] != seen[1] and not seen[0].exists() and not seen[1].exists()  # thrown away after the task
    assert (prepared / "lib" / "marker.txt").read_text() == "as prepared\n" and not (prepared / "lib" / "kfp").exists()


def test_an_interrupted_preparation_is_made_again_once_under_the_lock(monkeypatch, tmp_path):
    prepared = _fake_prepared(monkeypatch, tmp_path)
    (prepared / ".kfadapter-ready").unlink()  # a preparation killed before its end: not usable
    leftover = prepared.with_name(prepared.name + ".k1ll3d")  # and one killed while it was being made
    (leftover / "bin").mkdir(parents=True)
    made = []

    def prepare(path: Path) -> None:
        made.append(path)
        (path / "bin").mkdir()
        (path / "bin" / "python").symlink_to(sys.executable)
        (path / ".kfadapter-ready").write_text("ok\n")

    monkeypatch.setattr(task_venv, "prepare", prepare)
    found: list[Path] = []

    def ask() -> None:
        found.append(task_venv.template())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(made) == 1 and found == [prepared] * 4
    assert (prepared / ".kfadapter-ready").is_file() and not (prepared / "lib").exists()  # the broken one is gone
    assert not leftover.exists()


def test_a_failed_preparation_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("KFADAPTER_SANDBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(task_venv, "_process_template", None)

    def prepare(path: Path) -> None:
        (path / "bin").mkdir()
        raise RuntimeError("ensurepip failed")

    monkeypatch.setattr(task_venv, "prepare", prepare)
    with pytest.raises(RuntimeError, match="ensurepip"):  # the task fails, saying why
        task_venv.template()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [task_venv.prepared_path().name + ".lock"]
