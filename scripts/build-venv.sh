#!/bin/sh
# Build the image's virtualenv. The one recipe shared by the Dockerfile (build stage) and `make image-check`,
# so what CI checks is what the image runs.
#
#   scripts/build-venv.sh deps VENV LOCKFILE   create VENV and install exactly the hashed lock file
#   scripts/build-venv.sh app  VENV SRCDIR     install the kfadapter package itself (no dependencies), then
#                                              `pip check` that the lock satisfies everything it declares
#
# PYTHON names the interpreter that creates the venv (default: python3). Two steps, so that the Docker layer
# holding the dependencies is rebuilt only when the lock file changes.
set -eu

usage() { echo "usage: $0 deps VENV LOCKFILE | app VENV SRCDIR" >&2; exit 64; }
[ $# -eq 3 ] || usage
step=$1 venv=$2 arg=$3
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-input "$@"; }

case "$step" in
  deps)
    "${PYTHON:-python3}" -m venv "$venv"
    # --require-hashes: every distribution pip downloads must match a hash in the lock (kfp-server-api is an
    # sdist: its archive is hashed too); a dependency missing from the lock is an error, not a download.
    pip install --require-hashes -r "$arg"
    ;;
  app)
    pip install --no-deps "$arg"
    # Fails if pyproject.toml declares a dependency the lock does not provide (regenerate with `make lock`).
    pip check || { echo "$0: requirements.lock does not provide what pyproject.toml declares: run \`make lock\`" >&2; exit 1; }
    ;;
  *) usage ;;
esac
