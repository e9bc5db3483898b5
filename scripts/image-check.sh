#!/bin/sh
# `make image-check`: build the image's virtualenv the way the Dockerfile does (scripts/build-venv.sh, the same
# hashed lock, python3.11) in a temporary directory, then check that gunicorn can load the app from it
# (`gunicorn --check-config`), with the environment the image and the chart give it. There is no Docker engine
# in CI; this is the part of `docker build` that can break without one.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
PYTHON=${PYTHON:-python3.11}
export PYTHON
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kfadapter-image-check.XXXXXX")
pid=""
cleanup() {
  # Stop the server this script started (by its pid), then remove the temporary tree.
  if [ -n "$pid" ]; then
    kill -TERM "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
venv=$tmp/opt/venv

# A Docker build sees no pip configuration: drop this machine's (extra indexes, find-links, constraints) so
# that pip resolves the lock against PyPI exactly as the build stage does.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV || true

start=$(date +%s)
echo "image-check: building the image venv in $venv ($("$PYTHON" --version))"
# The build stage installs from a copy of the sources; so do we (no build/ or egg-info left in the work tree).
mkdir -p "$tmp/src"
cp -R pyproject.toml README.md kfadapter "$tmp/src/"
# pip's output only when it fails, so CI's log ends with the test summary and these few lines.
if ! { sh scripts/build-venv.sh deps "$venv" requirements.lock && sh scripts/build-venv.sh app "$venv" "$tmp/src"; } \
    >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  echo "image-check: building the venv failed" >&2
  exit 1
fi

# Run as the image does: from an unrelated directory (so nothing is imported from the work tree), no .pyc
# written, the chart's ConfigMap variables (O-RAN names), the store under /data's stand-in.
mkdir -p "$tmp/data" "$tmp/tmp"
cd "$tmp/data"
run() {
  env -i PATH="$venv/bin:/usr/bin:/bin" HOME="$tmp/tmp" TMPDIR="$tmp/tmp" PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 KFADAPTER_STORE_PATH="$tmp/data/kfadapter.sqlite" \
    KUBEFLOW_HOST=ml-pipeline-ui.kubeflow KUBEFLOW_PORT=80 KF_NAMESPACE=ric KF_ADAPTER_PORT=5001 \
    TRAININGMGR_HOST=tm.traininghost TRAININGMGR_PORT=32002 "$@"
}
# The console script the image's ENTRYPOINT names.
run "$venv/bin/kfadapter" --help >/dev/null
conf=""
if run "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("kfadapter.server.gunicorn_conf") is None)'; then
  conf="-c python:kfadapter.server.gunicorn_conf"
fi
echo "image-check: gunicorn --check-config $conf kfadapter.wsgi:app"
# shellcheck disable=SC2086
run "$venv/bin/gunicorn" --check-config $conf kfadapter.wsgi:app

# The ENTRYPOINT itself: `kfadapter serve` (gunicorn, gthread) answers /liveness on the configured port.
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# In its own process group (setsid), so that stopping it stops gunicorn's master and workers whatever the
# shell does with background jobs; exec all the way down, so $pid is the group's leader.
(exec setsid env -i PATH="$venv/bin:/usr/bin:/bin" HOME="$tmp/tmp" TMPDIR="$tmp/tmp" PYTHONDONTWRITEBYTECODE=1 \
  PYTHONUNBUFFERED=1 KFADAPTER_STORE_PATH="$tmp/data/kfadapter.sqlite" KF_ADAPTER_PORT="$port" \
  KFADAPTER_HOST=127.0.0.1 KFADAPTER_KFP_ENDPOINT=http://127.0.0.1:9/pipeline \
  TRAININGMGR_HOST=127.0.0.1 TRAININGMGR_PORT=9 \
  "$venv/bin/kfadapter" serve >"$tmp/serve.log" 2>&1) &
pid=$!
ok=""
for _ in $(seq 1 60); do
  if "$venv/bin/python" -c "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:$port/liveness', timeout=2).read() != b'Okay')" 2>/dev/null; then
    ok=1; break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
stop_server() {
  # The group: gunicorn's master and its workers, nothing else. No `--` before "-$pid": dash's kill builtin
  # reads it as a pid and fails, and the wait below would then block forever.
  kill -TERM "-$pid" 2>/dev/null || true
  for _ in $(seq 1 80); do
    kill -0 "-$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  kill -KILL "-$pid" 2>/dev/null || true
}
stop_server
wait "$pid" 2>/dev/null || true
pid=""
if [ -z "$ok" ]; then
  echo "image-check: kfadapter serve did not answer /liveness on port $port; its log:" >&2
  cat "$tmp/serve.log" >&2
  exit 1
fi
echo "image-check: kfadapter serve answered /liveness"
echo "image-check: OK in $(( $(date +%s) - start )) s"
