"""`GET /docs`: the OpenAPI document rendered for people by Swagger UI, whose files come from the installed
flask-swagger-ui package (nothing is fetched from anywhere else at run time); `GET /openapi.yaml`: the document as
it is written. Unknown paths point here (kfadapter/api/errors.py)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response
from flask_swagger_ui import get_swaggerui_blueprint

OPENAPI_YAML = Path(__file__).parent / "openapi.yaml"

bp = Blueprint("docs", __name__)


@bp.get("/openapi.yaml")
def openapi_yaml():
    """Return the OpenAPI document as YAML."""
    return Response(OPENAPI_YAML.read_bytes(), status=200, content_type="application/yaml")


def register(app: Flask) -> None:
    """Serve Swagger UI at /docs (and its files under /docs/) over /openapi.json, and /openapi.yaml."""
    ui = get_swaggerui_blueprint(
        "/docs",
        "/openapi.json",
        config={
            "app_name": "kfadapter API",
            "validatorUrl": None,  # Swagger UI would otherwise send the document to validator.swagger.io
            "docExpansion": "list",
            "displayOperationId": False,
            "tryItOutEnabled": False,
        },
        blueprint_name="swagger_ui",
    )
    app.register_blueprint(bp)
    app.register_blueprint(ui)
    app.add_url_rule("/docs", endpoint="swagger_ui.show")  # the page itself without the trailing slash
