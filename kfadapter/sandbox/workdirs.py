"""The executing sandbox's folder: one per start, owned by the process, removed when it stops or dies.

Each start makes `<KFADAPTER_SANDBOX_WORKDIR or the temp dir>/kfadapter-sandbox-runs-XXXX/` with an `owner.json`
(pid and the process's start time, so a reused pid is not mistaken for the owner). Runs work in `<run_id>/`
inside it, and `serve --sandbox` keeps its store there too. At start-up, folders whose owner is dead (a sandbox
killed with SIGKILL) are removed; folders without an owner file are left alone (not ours to judge).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "kfadapter-sandbox-runs-"
OWNER = "owner.json"


def create(parent: str | os.PathLike | None = None) -> Path:
    """Remove dead sandboxes' folders under `parent` (default: the temp dir), then make this start's folder."""
    base = Path(parent) if parent else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    sweep(base)
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    (root / OWNER).write_text(json.dumps(_identity(os.getpid())), encoding="utf-8")
    return root


def sweep(base: Path) -> list[Path]:
    """Remove every sandbox folder under `base` whose owner process is gone; return them."""
    removed = []
    for folder in sorted(base.glob(PREFIX + "*")):
        try:
            owner = json.loads((folder / OWNER).read_text(encoding="utf-8"))
            pid = int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid, owner.get("started")):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove(path: Path) -> None:
    """Remove a folder and everything in it (gone already is fine)."""
    shutil.rmtree(path, ignore_errors=True)


def _identity(pid: int) -> dict:
    return {"pid": pid, "started": _start_time(pid)}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses, so count after its last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    # The pid exists: it is the owner unless it was reused by a process that started at another time.
    return started is None or _start_time(pid) in (None, started)
