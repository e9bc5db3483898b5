"""A CPU profile of the adapter's gunicorn workers under load, summarized as top frames by share.

py-spy samples the worker processes from outside (every thread, no change to the adapter) while the bench
loads one route; only samples of the thread holding the GIL count (`--gil`), i.e. the Python work a worker
does, not threads waiting on sockets or locks. The summary gives,
per route, the share of samples in which a function is on the stack (inclusive) and at the top (self), and the
same per component (kfadapter's modules, each library, the standard library's modules).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_ROOT_SHARE = 0.97  # frames on (nearly) every stack are thread and worker loops: no information


def py_spy() -> str | None:
    """Return the py-spy executable beside this interpreter or on PATH, or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pids: list[int], load, seconds: float, rate: int = 250) -> list[tuple[list[str], int]]:
    """Sample `pids` for `seconds` while `load(stop_event)` runs in a thread; return (stack, count) pairs."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    tmp = Path(tempfile.mkdtemp(prefix="kfadapter-profile-"))
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(stop,))
    loader.start()
    time.sleep(0.3)  # connections opened, steady state
    procs = [
        subprocess.Popen(
            [
                exe,
                "record",
                "-p",
                str(pid),
                "-f",
                "raw",
                "-o",
                str(tmp / f"{pid}.txt"),
                "-d",
                str(int(seconds)),
                "-r",
                str(rate),
                "--nonblocking",
                "--gil",
                "--function",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    for p in procs:
        p.wait(seconds + 60)
    stop.set()
    loader.join()
    stacks = []
    for pid in pids:
        path = tmp / f"{pid}.txt"
        for line in path.read_text().splitlines() if path.exists() else []:
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks.append((stack.split(";"), int(count)))
    shutil.rmtree(tmp, ignore_errors=True)
    return stacks


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    return (m["func"], m["file"]) if m else (frame, "")


def component(path: str) -> str:
    """Name what a source file belongs to: a kfadapter module, else its top package or module (py-spy gives
    paths relative to sys.path: `flask/app.py`, `json/encoder.py`, `socket.py`)."""
    for marker in ("site-packages/", "/lib/python3.11/"):
        path = path.split(marker, 1)[-1]
    if path.startswith("kfadapter/") or "/kfadapter/" in path:
        return "kfadapter." + path.split("kfadapter/", 1)[1].removesuffix(".py").replace("/", ".")
    return path.split("/", 1)[0].removesuffix(".py") or "?"


def _short(func: str, path: str) -> str:
    return f"{func} ({component(path)})"


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> dict:
    """Inclusive and self shares of functions and components over the samples."""
    total = sum(count for _, count in stacks)
    if not total:
        return {"samples": 0}
    incl_f: Counter = Counter()
    self_f: Counter = Counter()
    incl_c: Counter = Counter()
    self_c: Counter = Counter()
    for frames, count in stacks:
        parsed = [_parse(f) for f in frames]
        for name in {_short(func, path) for func, path in parsed}:
            incl_f[name] += count
        for comp in {component(path) for _, path in parsed}:
            incl_c[comp] += count
        func, path = parsed[-1]
        self_f[_short(func, path)] += count
        self_c[component(path)] += count

    def table(counter: Counter, skip_roots: bool) -> list[list]:
        rows = [(k, v / total) for k, v in counter.most_common() if not (skip_roots and v / total >= _ROOT_SHARE)]
        return [[k, round(share, 3)] for k, share in rows[:top]]

    return {
        "samples": total,
        "components_inclusive": table(incl_c, True),
        "components_self": table(self_c, False),
        "functions_inclusive": table(incl_f, True),
        "functions_self": table(self_f, False),
    }


def write_text(profiles: dict[str, dict], path: Path) -> None:
    """Write the summaries as a readable text file."""
    lines = [
        "CPU profile of the adapter's gunicorn workers (py-spy --gil: samples of the thread holding the GIL), per route.",
        "inclusive = share of samples with the frame on the stack; self = share with it on top.",
        f"written by bench/run.py at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, pid {os.getpid()}",
        "",
    ]
    for label, prof in profiles.items():
        lines.append(f"== {label}: {prof.get('samples', 0)} samples")
        for key in ("components_inclusive", "components_self", "functions_inclusive", "functions_self"):
            lines.append(f"  -- {key.replace('_', ' ')}")
            lines.extend(f"    {share * 100:5.1f} %  {name}" for name, share in prof.get(key, []))
        lines.append("")
    path.write_text("\n".join(lines))
