"""The OpenAPI document and the app's routes describe the same API."""
from __future__ import annotations

import re


def _app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def _doc_routes(doc) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def test_document_and_routes_match(client, app):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    doc = resp.json
    assert doc["openapi"].startswith("3.1")
    app_routes, doc_routes = _app_routes(app), _doc_routes(doc)
    assert app_routes - doc_routes == set(), "routes missing from the document"
    assert doc_routes - app_routes == set(), "the document names routes that do not exist"


def test_every_operation_documents_its_errors(client):
    doc = client.get("/openapi.json").json
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or path in ("/liveness", "/metrics", "/openapi.json"):
                continue
            responses = op["responses"]
            assert "default" in responses or "503" in responses, (method, path)
