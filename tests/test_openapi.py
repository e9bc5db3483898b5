"""The OpenAPI document and the app's routes describe the same API."""

from __future__ import annotations

import re


def _app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/docs/"):
            continue  # Swagger UI's own files (and /docs/ itself); the page is documented as /docs
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def _doc_routes(doc) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


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
            if method == "parameters" or path in ("/liveness", "/metrics", "/openapi.json", "/openapi.yaml", "/docs"):
                continue
            responses = op["responses"]
            assert "default" in responses or "503" in responses, (method, path)


def _operations(doc):
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _resolved(doc, schema):
    """The schema with every local $ref replaced (jsonschema then needs no registry)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            node = doc
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            return _resolved(doc, node)
        return {k: _resolved(doc, v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolved(doc, v) for v in schema]
    return schema


def test_every_operation_has_a_tag_and_an_example_that_fits_its_schema(client):
    import jsonschema

    doc = client.get("/openapi.json").json
    declared = {t["name"] for t in doc["tags"]}
    for method, path, op in _operations(doc):
        assert op.get("tags") and set(op["tags"]) <= declared, (method, path)
        answers = op["responses"]["200"]["content"]
        examples = {media: body["example"] for media, body in answers.items() if "example" in body}
        assert examples, f"{method.upper()} {path} has no example"
        for media, example in examples.items():
            schema = _resolved(doc, answers[media]["schema"])
            jsonschema.validate(example, schema)  # an example that contradicts its schema is worse than none
        if "requestBody" in op:
            body = op["requestBody"]["content"]
            media, spec = next(iter(body.items()))
            assert "example" in spec, (method, path)
            if media == "application/json":
                jsonschema.validate(spec["example"], _resolved(doc, spec["schema"]))


def test_the_first_server_url_works_wherever_the_document_is_served(client):
    doc = client.get("/openapi.json").json
    assert doc["servers"][0]["url"] == "/"  # relative: the host that served the page, e.g. make run's
    assert any(s["url"] == "http://kfadapter.traininghost:5001" for s in doc["servers"])


def test_yaml_document_is_the_json_one(client):
    import yaml

    resp = client.get("/openapi.yaml")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/yaml"
    assert yaml.safe_load(resp.data) == client.get("/openapi.json").json


def test_docs_page_is_served_from_the_installed_package(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    text = page.data.decode()
    # Every script and stylesheet is local to /docs/ (nothing from a CDN), and the validator is off.
    assets = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert assets and all(a.startswith("/docs/") for a in assets), assets
    assert '"validatorUrl": null' in text and '"url": "/openapi.json"' in text
    for asset in assets:
        with client.get(asset) as resp:
            assert resp.status_code == 200, asset


def test_unknown_paths_point_at_the_index_and_the_docs(client):
    resp = client.get("/nothing/here")
    assert resp.status_code == 404 and resp.headers["Content-Type"] == "application/json"
    body = resp.json
    assert body["code"] == "not_found" and "/docs" in body["message"]
    assert body["details"] == {"path": "/nothing/here", "index": "/", "docs": "/docs", "openapi": "/openapi.json"}
    assert client.get("/").json["links"]["docs"] == "/docs"
