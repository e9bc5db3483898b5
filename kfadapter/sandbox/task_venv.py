"""Task environments for executed runs: a fresh copy of one prepared virtual environment per task.

kfp.local makes every task's environment from nothing: a venv with pip, then pip, setuptools and wheel upgraded
from the package index, about 10 s of CPU per task before the component's own `pip install` starts. KFP runs each
task in a fresh container of the component's image: the same starting point every time. The sandbox's stand-in
for that image is one environment prepared exactly as kfp.local prepares it, once per machine and interpreter,
kept in a cache directory (`KFADAPTER_SANDBOX_CACHE`, else `$XDG_CACHE_HOME/kfadapter`, else
`~/.cache/kfadapter`) and copied for each task (about 0.3 s). Each task still gets its own throw-away environment
and the component's command still pip-installs what it asks for into it; the prepared one is never written to.
When no cache directory is writable the environment is prepared once per executor process instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_READY = ".kfadapter-ready"  # written last: a directory without it is an interrupted preparation
_process_template: Path | None = None


def cache_root() -> Path:
    """Where prepared environments are kept."""
    if os.environ.get("KFADAPTER_SANDBOX_CACHE"):
        return Path(os.environ["KFADAPTER_SANDBOX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kfadapter"


def _template_name() -> str:
    # One per interpreter: a venv points at the Python it was made from.
    digest = hashlib.sha256(os.path.realpath(sys.executable).encode()).hexdigest()[:12]
    return f"task-venv-py{sys.version_info[0]}.{sys.version_info[1]}-{digest}"


def prepared_path() -> Path:
    """Where this interpreter's prepared environment is (or will be) in the cache."""
    return cache_root() / _template_name()


def prepare(path: Path) -> None:
    """Make a task environment at `path` as kfp.local does: venv with pip, then pip, setuptools, wheel upgraded."""
    venv.create(path, with_pip=True)
    python = str(path / "bin" / "python")
    for packages in (["pip"], ["setuptools", "wheel"]):
        done = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--upgrade", *packages],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:  # kfp.local logs this and goes on; so does the sandbox
            log.warning("task environment: upgrading %s failed: %s", " ".join(packages), done.stderr.strip()[-300:])
    (path / _READY).write_text("ok\n")


def _usable(path: Path) -> bool:
    return (path / _READY).is_file() and os.path.exists(path / "bin" / "python")


def template() -> Path:
    """The prepared environment: from the cache (made once, under a file lock), else one for this process."""
    global _process_template
    if _process_template is not None and _usable(_process_template):
        return _process_template
    target = prepared_path()
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / (target.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another executor preparing the same one: wait for it, then use it
            if not _usable(target):
                # Under the lock, any half-made one is a leftover of a preparation that was killed.
                for stale in [target, *root.glob(target.name + ".*")]:
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                work = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=root))
                try:
                    prepare(work)
                except BaseException:
                    shutil.rmtree(work, ignore_errors=True)
                    raise
                os.rename(work, target)
    except OSError as exc:
        log.warning("task environment cache %s is not usable (%s); preparing one for this run", root, exc)
        target = Path(tempfile.mkdtemp(prefix="kfadapter-task-venv-"))
        prepare(target)
    _process_template = target
    return target


@contextlib.contextmanager
def fresh_copy() -> Iterator[str]:
    """Yield the Python of a fresh copy of the prepared environment; the copy is removed afterwards."""
    with tempfile.TemporaryDirectory() as tempdir:
        copy = Path(tempdir) / "venv"
        shutil.copytree(template(), copy, symlinks=True)
        (copy / _READY).unlink()
        yield str(copy / "bin" / "python")


def install() -> None:
    """Make kfp.local's SubprocessRunner(use_venv=True) give each task a fresh copy instead of a new venv."""
    from kfp.local import subprocess_task_handler
    from kfp.local.pip_install_manager import pip_install_manager

    kfp_local_environment = subprocess_task_handler.environment

    @contextlib.contextmanager
    def environment(use_venv: bool, runner_config: object = None, has_pip_install: bool = False) -> Iterator[str]:
        if not use_venv:
            with kfp_local_environment(use_venv, runner_config, has_pip_install) as python:
                yield python
            return
        # kfp.local holds this semaphore while a task's environment exists; so does the sandbox.
        with pip_install_manager.managed_install("subprocess", track_stats=has_pip_install), fresh_copy() as python:
            yield python

    subprocess_task_handler.environment = environment
