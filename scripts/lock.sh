#!/bin/sh
# Regenerate requirements.lock: the image's runtime dependencies (pyproject.toml [project] dependencies, no
# extras) pinned with sha256 hashes of every file PyPI serves for each pinned version (all platforms, sdists
# included), for `pip install --require-hashes`.
#
#   make lock                                   add/drop what pyproject.toml changed, keep every other pin
#   make lock LOCK_ARGS=--upgrade               move every pin to the newest allowed version
#   make lock LOCK_ARGS='--upgrade-package kfp' move one
#
# pip-compile runs from a throw-away venv with a pinned pip-tools, against PyPI only: the machine's pip
# configuration (extra indexes, find-links, constraints) is ignored so that the hashes are PyPI's.
set -eu
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.6.2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_CONSTRAINT
"${PYTHON:-python3.11}" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet "pip-tools==$PIP_TOOLS_VERSION"
# The header of the lock names `make lock`, not this temporary path.
CUSTOM_COMPILE_COMMAND="make lock" "$tmp/venv/bin/pip-compile" --quiet --generate-hashes --strip-extras \
  --index-url https://pypi.org/simple --no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
  ${LOCK_ARGS:-} --output-file requirements.lock pyproject.toml
