"""GET /openapi.json (the adapter's OpenAPI 3 description) and GET /docs (Swagger UI).

Swagger UI's files come from the `swagger-ui-bundle` package, served by the adapter
itself: the page works with no internet access.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory, url_for

from kfadapter.errors import NotFound

bp = Blueprint("docs", __name__)

SPEC_EXTENSION = "kfadapter.openapi"
# Swagger UI files the page loads; nothing else from the bundle is served.
SWAGGER_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>kfadapter API</title>
    <link rel="stylesheet" type="text/css" href="{css}">
    <link rel="icon" type="image/png" href="{icon}" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{bundle}" charset="UTF-8"></script>
    <script src="{preset}" charset="UTF-8"></script>
    <script src="{init}" charset="UTF-8"></script>
  </body>
</html>
"""

_INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: %s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
};
"""


def load_spec() -> dict[str, Any]:
    """The OpenAPI document shipped in kfadapter/openapi/openapi.yaml."""
    text = resources.files("kfadapter.openapi").joinpath("openapi.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def app_spec() -> dict[str, Any]:
    """The OpenAPI document, loaded once per app."""
    spec = current_app.extensions.get(SPEC_EXTENSION)
    if spec is None:
        spec = load_spec()
        current_app.extensions[SPEC_EXTENSION] = spec
    return spec


def swagger_ui_dir() -> Path:
    """Where the installed swagger-ui-bundle package keeps Swagger UI's files."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3 description, with the server URL this request came in through."""
    spec = copy.deepcopy(app_spec())
    spec["servers"] = [{"url": request.script_root or "/"}]
    return jsonify(spec)


@bp.get("/docs")
def docs_page() -> Response:
    """The Swagger UI page for /openapi.json."""
    page = _PAGE.format(
        css=url_for("docs.docs_asset", filename="swagger-ui.css"),
        icon=url_for("docs.docs_asset", filename="favicon-32x32.png"),
        bundle=url_for("docs.docs_asset", filename="swagger-ui-bundle.js"),
        preset=url_for("docs.docs_asset", filename="swagger-ui-standalone-preset.js"),
        init=url_for("docs.docs_init"),
    )
    return Response(page, mimetype="text/html")


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """The script that starts Swagger UI on /openapi.json."""
    body = _INIT_JS % json.dumps(url_for("docs.openapi_json"))
    return Response(body, mimetype="text/javascript")


@bp.get("/docs/assets/<filename>")
def docs_asset(filename: str) -> Response:
    """One of Swagger UI's bundled files."""
    if filename not in SWAGGER_ASSETS:
        raise NotFound(f"no documentation asset named {filename!r}")
    return send_from_directory(swagger_ui_dir(), filename, max_age=3600)
