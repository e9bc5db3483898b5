# kfadapter image: two stages, the virtualenv built in the first and copied into a slim final stage.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY kfadapter ./kfadapter
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    KFADAPTER_STORE_PATH=/data/kfadapter.sqlite
COPY --from=build /opt/venv /opt/venv
RUN mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
EXPOSE 5001
ENTRYPOINT ["kfadapter", "serve"]
