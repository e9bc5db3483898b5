"""The container image's recipe: Dockerfile, .dockerignore, the hashed lock and the shared venv script.

There is no Docker engine in CI: these are static checks; `make image-check` builds the image's virtualenv
with the same script and lock and starts the app from it.
"""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "python:3.11-slim"
UID = "10001"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, args = current.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        assert result, "an instruction before the first FROM"
        result[-1].append(ins)
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {canonical name: (version, [sha256 hashes])}."""
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", (ROOT / "requirements.lock").read_text())
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"option line in the lock: {line!r}"
        spec, *options = line.split()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", spec)
        assert m, f"not pinned with ==: {spec!r}"
        hashes = [o.split(":", 1)[1] for o in options if o.startswith("--hash=sha256:")]
        assert len(hashes) == len(options), f"{spec}: only --hash=sha256 options belong on a lock line"
        name = canonicalize_name(m.group(1))
        assert name not in entries, f"{name} pinned twice"
        entries[name] = (m.group(2), hashes)
    return entries


def test_two_stages_from_python_slim():
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) == 2, froms
    assert froms[0].split() == [BASE_IMAGE, "AS", "build"] or froms[0].split()[:3] == [BASE_IMAGE, "as", "build"]
    assert froms[1].split()[0] == BASE_IMAGE  # the venv's interpreter symlink needs the same base image


def test_final_stage_runs_as_numeric_non_root_user():
    users = [args for word, args in final_stage() if word == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric (runAsNonRoot checks it): {user!r}"
    assert user.split(":")[0] == UID and user.split(":")[0] != "0"
    # Nothing after USER may need root.
    after = final_stage()[[w for w, _ in final_stage()].index("USER"):]
    assert not [a for w, a in after if w == "RUN"]


def test_exec_form_entrypoint_runs_kfadapter_serve():
    final = final_stage()
    entry = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    cmd = [json.loads(a) for w, a in final if w == "CMD"]
    assert len(entry) == 1 and isinstance(entry[0], list), "ENTRYPOINT must be exec form (a JSON array)"
    assert all(isinstance(c, list) for c in cmd), "CMD must be exec form (a JSON array)"
    argv = entry[0] + (cmd[-1] if cmd else [])
    assert Path(argv[0]).name == "kfadapter" and argv[1:] == ["serve"], argv
    assert ("EXPOSE", "5001") in final


def test_final_stage_has_no_build_tools_and_installs_nothing():
    final = final_stage()
    text = "\n".join(f"{w} {a}" for w, a in final)
    for tool in ("gcc", "g++", "build-essential", "make ", "python3-dev", "libffi-dev", "pip install",
                 "apt-get install", "git "):
        assert tool not in text, f"{tool!r} in the final stage"
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], copies


def test_final_stage_environment_fits_a_read_only_root():
    env_text = " ".join(a for w, a in final_stage() if w == "ENV")
    env = dict(tok.split("=", 1) for tok in shlex.split(env_text))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TMPDIR"] == "/tmp"
    assert env["KFADAPTER_STORE_PATH"] == "/data/kfadapter.sqlite"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # The O-RAN KF_ADAPTER_PORT must keep working: the image sets no KFADAPTER_* name that would shadow one.
    assert not {"KFADAPTER_PORT", "KFADAPTER_HOST", "KFADAPTER_NAMESPACE", "KFADAPTER_KFP_ENDPOINT"} & set(env)
    run = " ".join(a for w, a in final_stage() if w == "RUN")
    assert f"chown {UID}:{UID} /data" in run


def test_build_stage_uses_the_shared_script_and_the_lock():
    runs = [a for w, a in stages()[0] if w == "RUN"]
    assert "sh scripts/build-venv.sh deps /opt/venv requirements.lock" in runs
    assert "sh scripts/build-venv.sh app /opt/venv ." in runs
    script = (ROOT / "scripts" / "build-venv.sh").read_text()
    assert "--require-hashes" in script and "--no-deps" in script and "pip check" in script
    subprocess.run(["sh", "-n", str(ROOT / "scripts" / "build-venv.sh")], check=True)
    # make image-check runs the very same script.
    assert "scripts/build-venv.sh deps" in (ROOT / "scripts" / "image-check.sh").read_text()


def test_lock_pins_every_line_with_hashes():
    entries = lock_entries()
    assert len(entries) > 20
    for name, (version, hashes) in entries.items():
        Version(version)
        assert hashes, f"{name}=={version} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_lock_satisfies_the_runtime_dependencies():
    """Every [project] dependency is pinned in the lock at a version its specifier allows (`make lock` if not)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entries = lock_entries()
    problems = []
    for raw in project["dependencies"]:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue
        pinned = entries.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(pinned[0], prereleases=True):
            problems.append(f"{req.name}=={pinned[0]} does not satisfy {req.specifier}")
    assert not problems, "regenerate with `make lock`: " + "; ".join(problems)
    # Test-only tools stay out of the image.
    assert "pytest" not in entries and "jsonschema" not in entries


def test_dockerignore_lets_in_exactly_what_the_build_copies():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern[1:] if negate else pattern
            pat = pat.rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or \
                    fnmatch.fnmatch(path, pat.replace("**/", "")) or \
                    fnmatch.fnmatch(Path(path).name, pat.replace("**/", "")):
                result = not negate
        return result

    sources = []
    for stage in stages():
        for word, args in stage:
            if word == "COPY" and not args.startswith("--from"):
                sources += args.split()[:-1]
    assert sources
    for src in sources:
        assert not ignored(src.rstrip("/")), f".dockerignore drops {src}, which the Dockerfile copies"
    for secret_or_bulk in (".venv/bin/python", ".git/config", "tests/conftest.py", "var/kfadapter.sqlite",
                           "kfadapter/__pycache__/app.cpython-311.pyc", "bench/run.py"):
        assert ignored(secret_or_bulk), f"{secret_or_bulk} would be sent to the Docker daemon"


def test_scripts_are_valid_shell():
    for script in ("build-venv.sh", "image-check.sh", "lock.sh"):
        path = ROOT / "scripts" / script
        subprocess.run(["sh", "-n", str(path)], check=True)
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
