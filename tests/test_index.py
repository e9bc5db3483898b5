"""`GET /` answers what the service is, its version and where its document, probes and metrics are."""
from __future__ import annotations

from importlib import metadata

from kfadapter import cli


def test_index_names_the_service_version_and_links(client):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    body = resp.json
    assert body["service"] == "kfadapter" and body["version"] == metadata.version("kfadapter")
    links = body["links"]
    assert (links["openapi"], links["readiness"], links["metrics"]) == ("/openapi.json", "/readiness", "/metrics")
    for path in links.values():  # every link leads somewhere that answers
        assert client.get(path).status_code == 200, path


def test_cli_version(capsys):
    try:
        cli.main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"kfadapter {metadata.version('kfadapter')}"
