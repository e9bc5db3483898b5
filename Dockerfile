# kfadapter image. Build: docker build -t kfadapter .
#
# Two stages: the virtualenv is built in the first (from the hashed lock, by scripts/build-venv.sh, the same
# recipe `make image-check` runs in CI) and copied into a slim final stage that has no compilers, no pip cache
# and no source tree. The final stage runs as UID 10001 and writes only to /data (SQLite store: a PVC in the
# chart) and /tmp (an emptyDir), so it runs with readOnlyRootFilesystem.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore PYTHON=python3.11
WORKDIR /src
COPY scripts/build-venv.sh scripts/
# Dependencies first: this layer changes only with the lock file.
COPY requirements.lock ./
RUN sh scripts/build-venv.sh deps /opt/venv requirements.lock
COPY pyproject.toml README.md ./
COPY kfadapter ./kfadapter
RUN sh scripts/build-venv.sh app /opt/venv .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="kfadapter" \
      org.opencontainers.image.description="Training-manager-compatible REST adapter in front of Kubeflow Pipelines 2.x"
# A passwd entry for the numeric user (some libraries look the user up); no home directory, no login shell.
RUN groupadd --system --gid 10001 kfadapter \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin kfadapter \
 && mkdir -p /data \
 && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
# Read-only root: no .pyc written at run time (pip compiled them at build time), temp files and HOME in /tmp.
# Host and port keep their defaults (0.0.0.0:5001) so that the O-RAN KF_ADAPTER_PORT still applies.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    HOME=/tmp \
    KFADAPTER_STORE_PATH=/data/kfadapter.sqlite
WORKDIR /data
USER 10001:10001
EXPOSE 5001
# `kfadapter serve`: gunicorn (gthread workers) as PID 1, so SIGTERM drains requests gracefully.
# Other commands: docker run IMAGE sandbox --host 0.0.0.0
ENTRYPOINT ["/opt/venv/bin/kfadapter"]
CMD ["serve"]
