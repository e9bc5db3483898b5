"""Optional bearer-token auth: every route but the probes needs the token when one is configured."""

from __future__ import annotations

import dataclasses
import re

import pytest

from kfadapter.app import create_app
from kfadapter.settings import Settings, SettingsError

TOKEN = "t0ken-for-tests-0123456789"


@pytest.fixture
def secured(settings):
    return create_app(dataclasses.replace(settings, api_token=TOKEN))


def _routes(app):
    """Every (method, concrete path) the app serves, placeholders filled with dummy values."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: f"x-{m.group(1)}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def test_every_route_but_the_probes_needs_the_token(secured):
    client = secured.test_client()
    routes = _routes(secured)
    assert len(routes) >= 15
    for method, path in routes:
        resp = client.open(path, method=method)
        if path in ("/liveness", "/readiness", "/docs", "/openapi.json", "/openapi.yaml") or path.startswith("/docs/"):
            assert resp.status_code != 401, path
            continue
        assert resp.status_code == 401, (method, path, resp.status_code)
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.json["code"] == "unauthorized" and resp.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = client.open(path, method=method, headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"})
        assert wrong.status_code == 401
        right = client.open(path, method=method, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code != 401, (method, path)


def test_token_unlocks_real_work(secured):
    client = secured.test_client()
    assert client.get("/experiments").status_code == 401
    resp = client.get("/experiments", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200 and "Default" in resp.json


def test_auth_is_off_by_default(client):
    assert client.get("/experiments").status_code == 200


def test_token_settings(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    s = Settings.from_env({"KFADAPTER_API_TOKEN_FILE": str(path)})
    assert s.api_token == TOKEN and TOKEN not in repr(s)
    with pytest.raises(SettingsError, match="KFADAPTER_API_TOKEN"):
        Settings.from_env({"KFADAPTER_API_TOKEN": "short"})
    with pytest.raises(SettingsError, match="KFADAPTER_API_TOKEN_FILE"):
        Settings.from_env({"KFADAPTER_API_TOKEN_FILE": str(tmp_path / "missing")})
