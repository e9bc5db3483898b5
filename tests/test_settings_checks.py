"""Every setting is checked at start-up: one bad value per variable, one line naming it, exit 2 before workers.

The list of variables is read from the source (every quoted environment name in the modules that read
settings), so a new setting without a bad-value case here fails `test_every_setting_has_a_bad_value_case`.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kfadapter.settings import Settings, SettingsError, load
from kfadapter.settings.checks import NO_MAX, RANGES, SECRETS, gunicorn_options

from tests.support import clean_env

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "kfadapter" / f for f in ("settings/model.py", "settings/checks.py", "server/gunicorn_conf.py")]
ENV_NAME = re.compile(r"""["']((?:KFADAPTER|KF|KUBEFLOW|TRAININGMGR|PROMETHEUS)_[A-Z0-9_]+)["']""")
NUMERIC = re.compile(r"""(int|float)\(\s*["']([A-Z0-9_]+)["']|num\(\s*["']([A-Z0-9_]+)["'],\s*(int|float)""")
MISSING_DIR = "/nonexistent-kfadapter-dir"

# Values that must be refused, for every variable that is not a plain number (numbers get generic cases below).
BAD: dict[str, list[str]] = {
    "KFADAPTER_KFP_ENDPOINT": ["kfp:80", "http://", "http://kfp:99999", "ftp://kfp"],
    "KUBEFLOW_HOST": ["http://ml-pipeline-ui", "ml pipeline"],
    "KFADAPTER_KFP_VERSION": ["3.0", "latest", "2", "2.3.0.1", "unknown"],
    "KFADAPTER_NAMESPACE": ["Team_A", "-ns"],
    "KF_NAMESPACE": ["UPPER"],
    "KFADAPTER_HOST": ["0.0.0.0:5001", "a host"],
    "KFADAPTER_KFP_TOKEN": ["two words"],
    "KFADAPTER_KFP_TOKEN_FILE": [f"{MISSING_DIR}/token"],
    "KF_PIPELINES_SA_TOKEN_PATH": [f"{MISSING_DIR}/token"],
    "KFADAPTER_KFP_CA_CERT": [f"{MISSING_DIR}/ca.pem", "{dir}", "{not_pem}"],
    "KFADAPTER_STORE_PATH": ["{file}/store.sqlite"],
    "KFADAPTER_STORE_URL": ["mysql://u:secret@db/kf", "store.sqlite"],
    "KFADAPTER_ARGUMENT_MAPPING": ["{", "[1]", '{"a": 1}', '{"a": "{x"}', '{"a": "x}"}', '{"a": "{0}"}',
                                   '{"a": "{}"}', '{"a": "{x.y}"}', '{"a": "{x:d}"}', '{"a": "{x!z}"}', '{"": "x"}'],
    "KFADAPTER_TM_URL": ["tm:32002", "http://tm:0/x"],
    "TRAININGMGR_HOST": ["tm host"],
    "KFADAPTER_WATCH": ["maybe"],
    "KFADAPTER_API_TOKEN": ["short", "a token with spaces in it"],
    "KFADAPTER_API_TOKEN_FILE": [f"{MISSING_DIR}/api-token"],
    "KFADAPTER_LOG_FORMAT": ["xml"],
    "KFADAPTER_LOG_LEVEL": ["LOUD"],
    "KFADAPTER_MLMD_ENDPOINT": ["metadata", "metadata:0", "metadata:70000"],
    "KFADAPTER_OBJECT_STORE_ENDPOINT": ["minio:9000"],
    "KFADAPTER_OBJECT_STORE_ACCESS_KEY": ["a b"],
    "KFADAPTER_OBJECT_STORE_SECRET_KEY": ["a b"],
    "KFADAPTER_OBJECT_STORE_REGION": ["US East"],
    "KFADAPTER_SANDBOX_WORKDIR": ["{file}/work"],
    "KFADAPTER_GUNICORN_BIND": ["nohost", "host:99999"],
    "KFADAPTER_GUNICORN_ACCESSLOG": ["relative.log", f"{MISSING_DIR}/access.log"],
    "KFADAPTER_GUNICORN_LOGLEVEL": ["loud"],
    "KFADAPTER_GUNICORN_WORKER_TMP_DIR": [MISSING_DIR, "relative"],
    "PROMETHEUS_MULTIPROC_DIR": [MISSING_DIR],
}
# A variable read only when another one is set.
CONTEXT = {"KUBEFLOW_PORT": {"KUBEFLOW_HOST": "kfp"}, "TRAININGMGR_PORT": {"TRAININGMGR_HOST": "tm"}}


def read_names() -> tuple[set[str], dict[str, str]]:
    """Return every environment name the settings modules quote, and the numeric ones with their kind."""
    names, numeric = set(), {}
    for path in SOURCES:
        text = path.read_text()
        names |= set(ENV_NAME.findall(text))
        for kind, name, name2, kind2 in NUMERIC.findall(text):
            numeric[name or name2] = kind or kind2
    return names, numeric


def numeric_bad(name: str, kind: str) -> list[str]:
    low, high = RANGES.get(name, (1 if kind == "int" else 0, NO_MAX))
    values = ["abc", "inf", "nan", "-inf", str(int(low) - 1) if kind == "int" else "0"]
    if kind == "int":
        values.append("1.5")
    if high != NO_MAX:
        values.append(str(int(high) + 1))
    return values


def cases() -> list[tuple[str, str]]:
    names, numeric = read_names()
    out = [(name, value) for name in sorted(names) for value in
           (BAD.get(name) or (numeric_bad(name, numeric[name]) if name in numeric else []))]
    return out


def test_every_setting_has_a_bad_value_case():
    names, numeric = read_names()
    assert len(names) > 40  # the scan found the settings (KFADAPTER_*, O-RAN names, gunicorn knobs)
    without = sorted(n for n in names if n not in BAD and n not in numeric)
    assert not without, f"add bad values to BAD for {without}"
    assert {"KFADAPTER_POLL_INTERVAL", "KFADAPTER_LEASE_TTL", "KFADAPTER_NOTIFY_TIMEOUT",
            "KFADAPTER_GUNICORN_WORKERS"} <= set(numeric)


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "not.pem").write_text("not a certificate\n")
    return {"file": str(tmp_path / "file"), "dir": str(tmp_path), "not_pem": str(tmp_path / "not.pem")}


def check_all(env: dict[str, str]) -> None:
    """What `kfadapter serve` and kfadapter/server/gunicorn_conf.py check before any worker starts."""
    load(env)
    gunicorn_options(env, check_dirs=True)


@pytest.mark.parametrize("name, value", cases())
def test_bad_value_is_refused_in_one_line(name, value, paths, tmp_path):
    for key, path in paths.items():
        value = value.replace("{%s}" % key, path)
    env = {"KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite")} | CONTEXT.get(name, {}) | {name: value}
    with pytest.raises(SettingsError) as info:
        check_all(env)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}=") and "must be" in message
    if name in SECRETS:
        assert value not in message and "(hidden)" in message
    else:
        assert repr(value) in message


@pytest.mark.parametrize("env", [
    {"KFADAPTER_PORT": "1"}, {"KFADAPTER_PORT": "65535"}, {"KFADAPTER_HOST": "::"}, {"KFADAPTER_HOST": "::1"},
    {"KFADAPTER_HOST": "localhost"}, {"KFADAPTER_GUNICORN_KEEPALIVE": "0"}, {"KFADAPTER_GUNICORN_MAX_REQUESTS": "0"},
    {"KFADAPTER_MLMD_ENDPOINT": "[::1]:8080"}, {"KFADAPTER_GUNICORN_BIND": "unix:/tmp/kfadapter.sock"},
    {"KFADAPTER_KFP_ENDPOINT": "http://ml-pipeline-ui.kubeflow:80/pipeline"}, {"KFADAPTER_POLL_INTERVAL": "0.5"},
    {"KFADAPTER_ARGUMENT_MAPPING": '{"featurepath": "{featuregroup_name}_{trainingjob_id}", "n": "{n!r:>4}"}'},
    {"KFADAPTER_GUNICORN_ACCESSLOG": "-"}, {"KFADAPTER_GUNICORN_WORKER_TMP_DIR": "/tmp"},
    {"KFADAPTER_KFP_VERSION": "2.3"}, {"KFADAPTER_KFP_VERSION": "v2.5.0"},
])
def test_good_values_pass(env, tmp_path):
    check_all({"KFADAPTER_STORE_PATH": str(tmp_path / "store.sqlite")} | env)


def test_store_directory_is_created(tmp_path):
    load({"KFADAPTER_STORE_PATH": str(tmp_path / "new" / "dir" / "store.sqlite")})
    assert (tmp_path / "new" / "dir").is_dir()


def test_token_file_checked_only_when_it_is_the_credential(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc")
    base = {"KFADAPTER_STORE_PATH": str(tmp_path / "s.sqlite")}
    load(base | {"KF_PIPELINES_SA_TOKEN_PATH": str(token)})
    # A static token wins over the file (tm-contract: existing_token), so the file is not needed then.
    load(base | {"KFADAPTER_KFP_TOKEN": "static", "KFADAPTER_KFP_TOKEN_FILE": f"{MISSING_DIR}/t"})


# The real processes, for a representative subset: exit 2, one line on stderr, no traceback, no worker started.
SERVE_CASES = [
    {"KFADAPTER_POLL_INTERVAL": "inf"}, {"KFADAPTER_LEASE_TTL": "nan"}, {"KFADAPTER_NOTIFY_TIMEOUT": "inf"},
    {"KFADAPTER_GUNICORN_WORKERS": "0"}, {"KFADAPTER_PORT": "70000"}, {"KFADAPTER_LOG_LEVEL": "LOUD"},
    {"KFADAPTER_STORE_PATH": "{file}/store.sqlite"}, {"KFADAPTER_ARGUMENT_MAPPING": '{"a": "{x"}'},
    {"KFADAPTER_KFP_CA_CERT": "/nonexistent"}, {"KFADAPTER_GUNICORN_THREADS": "many"},
    {"KFADAPTER_GUNICORN_LOGLEVEL": "loud"}, {"KUBEFLOW_HOST": "kfp", "KUBEFLOW_PORT": "0"},
    {"KFADAPTER_KFP_TOKEN": "two words"}, {"KFADAPTER_GUNICORN_WORKER_TMP_DIR": MISSING_DIR},
]
COMMANDS = {
    "serve": ["-m", "kfadapter.cli", "serve"],
    "serve --sandbox": ["-m", "kfadapter.cli", "serve", "--sandbox", "--port", "0", "--sandbox-port", "0"],
    "sandbox": ["-m", "kfadapter.cli", "sandbox", "--port", "0"],
    "gunicorn": ["-m", "gunicorn", "-c", "python:kfadapter.server.gunicorn_conf", "kfadapter.wsgi:app"],
}


def run(command: str, env: dict[str, str], paths: dict, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v.replace("{file}", paths["file"]) for k, v in env.items()}
    base = {"KFADAPTER_STORE_PATH": str(tmp_path / "s.sqlite")}
    if "KUBEFLOW_HOST" not in env:  # KFADAPTER_KFP_ENDPOINT wins over the O-RAN names, which are then not read
        base["KFADAPTER_KFP_ENDPOINT"] = "http://127.0.0.1:9"
    return subprocess.run([sys.executable, *COMMANDS[command]], env=clean_env(**(base | env)), cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


def assert_one_line(done: subprocess.CompletedProcess, name: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"kfadapter: configuration error: {name}=") and "must be" in lines[0]
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr + done.stdout


@pytest.mark.parametrize("env", SERVE_CASES, ids=lambda e: "+".join(f"{k}={v}" for k, v in e.items()))
def test_kfadapter_serve_stops_with_one_line(env, paths, tmp_path):
    done = run("serve", env, paths, tmp_path)
    assert_one_line(done, list(env)[-1])
    if "KFADAPTER_KFP_TOKEN" in env:
        assert "two words" not in done.stderr


@pytest.mark.parametrize("command, env", [
    ("gunicorn", {"KFADAPTER_GUNICORN_WORKERS": "0"}),
    ("gunicorn", {"KFADAPTER_POLL_INTERVAL": "inf"}),
    ("gunicorn", {"KFADAPTER_GUNICORN_ACCESSLOG": f"{MISSING_DIR}/a.log"}),
    ("sandbox", {"KFADAPTER_SANDBOX_WORKERS": "0"}),
    ("sandbox", {"KFADAPTER_LOG_LEVEL": "LOUD"}),
    ("serve --sandbox", {"KFADAPTER_STORE_PATH": "{file}/store.sqlite"}),
    ("serve --sandbox", {"KFADAPTER_SANDBOX_WORKDIR": "{file}/work"}),
])
def test_gunicorn_and_sandbox_stop_with_one_line(command, env, paths, tmp_path):
    assert_one_line(run(command, env, paths, tmp_path), list(env)[-1])


def test_settings_defaults_are_valid(tmp_path):
    settings = Settings.from_env({})
    assert settings.poll_interval == 10.0 and settings.port == 5001
    check_all({"KFADAPTER_STORE_PATH": str(tmp_path / "s.sqlite")})
