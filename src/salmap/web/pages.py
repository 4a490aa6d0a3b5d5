"""The HTML pages: the app (``/``), the API description (``/api``) and static files."""

from __future__ import annotations

from importlib.resources import files
from itertools import groupby

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from salmap.report.templating import environment

__all__ = ["add_routes"]


def add_routes(app: FastAPI, service) -> None:
    """``/``, ``/api``, ``/static/…`` and ``/api/samples/{name}.png``."""
    from salmap.io.image import SAMPLE_IMAGES
    from salmap.methods.path import BASELINES
    from salmap.report import METRICS
    from salmap.static import STATIC_METHODS
    from salmap.web.encode import COLORMAPS, png_bytes, shrink

    templates = environment("salmap.web")
    app.mount("/static", StaticFiles(directory=str(files("salmap.web") / "static")), "static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        from salmap.methods import METHODS

        specs = list(METHODS.values())
        families = [(family, list(group)) for family, group in groupby(specs, lambda s: s.family)]
        return templates.get_template("index.html").render(
            models=list(service.models),
            families=families,
            static_methods=list(STATIC_METHODS.values()),
            samples=SAMPLE_IMAGES,
            baselines=BASELINES,
            metrics=METRICS,
            colormaps=COLORMAPS,
            limits=service.limits,
        )

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api():
        return templates.get_template("api.html").render(schema=app.openapi())

    @app.get("/api/samples/{name}.png", summary="A bundled photo, as the page shows it")
    def sample(name: str):
        return Response(png_bytes(shrink(service.sample(name))), media_type="image/png")
