"""The layer rules of docs/ARCHITECTURE.md hold, and the checker would see them broken (import-linter)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (make installs it)")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "kfadapter", tree / "kfadapter", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_code_keeps_every_contract():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("api/health.py", "import kfp  # noqa", "Only kfconnect imports kfp"),
    ("core/errors.py", "from kfadapter.settings import Settings  # noqa", "Layers of docs/ARCHITECTURE.md"),
    ("outputs/argo.py", "from kfadapter.kfconnect import KfConnect  # noqa", "Layers of docs/ARCHITECTURE.md"),
    ("sandbox/views.py", "from kfadapter.packages import names  # noqa", "The sandbox shares only"),
    ("watch/poller.py", "from kfadapter.sandbox import SandboxServer  # noqa", "The adapter reaches the sandbox"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    tree = _copy(tmp_path)
    target = tree / "kfadapter" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    done = _lint_imports(tree)
    assert done.returncode != 0
    assert f"{contract}" in done.stdout and "1 broken" in done.stdout, done.stdout
