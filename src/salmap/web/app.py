"""The web page and its JSON API, on FastAPI.

``create_app(model=...)`` builds the application; ``salmap serve`` runs it on
uvicorn. Every answer of ``/api`` is JSON; an error is ``{"error": "one line"}``
with a 4xx status (503 with ``Retry-After`` when a queue is full), and the server
keeps serving. The OpenAPI description is at ``/openapi.json`` and readable at
``/api`` (no script from a CDN: the page works offline).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from salmap.errors import InputError, ModelError, UsageError
from salmap.web.jobs import Busy
from salmap.web.service import Service, method_options
from salmap.web.uploads import Limits, UploadError, decode_image, read_form, save_video

__all__ = ["create_app"]

_IMAGE_FIELDS = {"image", "sample"}
_EXPLAIN_FIELDS = _IMAGE_FIELDS | {"model", "method", "target", "score", "reduction", "top_k"}


def _form_body(fields: dict[str, str], file: str | None = "image") -> dict:
    """OpenAPI for a multipart form read by hand (FastAPI would spool it to disk)."""
    properties = {name: {"type": "string", "description": text} for name, text in fields.items()}
    if file:
        properties[file] = {"type": "string", "format": "binary", "description": f"the {file}"}
    return {
        "requestBody": {
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": properties}}
            }
        }
    }


def create_app(
    model=None,
    *,
    limits: Limits | None = None,
    queue: int = 8,
    job_queue: int = 4,
    hosts: list[str] | None = None,
) -> FastAPI:
    """Build the salmap web application.

    Parameters
    ----------
    model : name, path, keras.Model, adapter, or a list of them, optional
        The models the page may use, loaded now (default: the embedded
        EfficientNet-Lite0). A request can only choose among these.
    limits : Limits, optional
        Upload limits (bytes, pixels, video length).
    queue : int
        Requests that may wait for a model (one runs at a time); more are answered
        503 with ``Retry-After``.
    job_queue : int
        Background jobs (videos, several methods, reports) that may wait.
    hosts : list of str, optional
        Host names requests must be addressed to (``salmap serve`` on 127.0.0.1 gives
        ``127.0.0.1`` and ``localhost``): a web page elsewhere then cannot reach
        the server through a DNS name that it re-points to 127.0.0.1.

    Returns
    -------
    fastapi.FastAPI
        ``app.state.service`` holds the models, jobs and files; they are released
        when the application shuts down.
    """
    from salmap.models import load_model

    models = model if isinstance(model, (list, tuple)) else [model]
    service = Service([load_model(m) for m in models], limits or Limits(), queue, job_queue)
    app = _application(service)
    if hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    _add_security_headers(app)
    _add_error_handlers(app)
    from salmap.web import pages

    pages.add_routes(app, service)
    _add_info_routes(app, service)
    _add_work_routes(app, service)
    _add_job_routes(app, service)
    return app


def _application(service: Service) -> FastAPI:
    """The bare application, which releases ``service`` when it shuts down."""

    @asynccontextmanager
    async def lifespan(_app):
        yield
        service.close()

    app = FastAPI(
        title="salmap",
        summary="Saliency maps: model, static and motion saliency",
        docs_url=None,  # Swagger UI loads from a CDN; /api renders the schema offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    return app


#: The page runs only its own script and loads only from the server itself.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _add_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    statuses = {UploadError: None, UsageError: 400, ModelError: 400, InputError: 422}
    for kind, status in statuses.items():

        async def handler(_request, error, status=status):
            return _error(status or error.status, str(error).splitlines()[0])

        app.add_exception_handler(kind, handler)

    async def busy(_request, error: Busy):
        return _error(503, str(error), {"Retry-After": str(error.retry_after)})

    async def http(_request, error: HTTPException):
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    async def internal(_request, error: Exception):
        text = str(error).splitlines()[0] if str(error) else ""
        return _error(500, f"internal error: {type(error).__name__}: {text}")

    app.add_exception_handler(Busy, busy)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(Exception, internal)


def _add_info_routes(app: FastAPI, service: Service) -> None:
    from salmap.methods import ALIASES, METHODS
    from salmap.static import STATIC_METHODS
    from salmap.web.encode import COLORMAPS, DIVERGING, colormap_tables

    @app.get("/api/models", summary="The models this server was started with")
    def models() -> dict:
        return {
            "default": service.default_model,
            "models": [
                {
                    "name": name,
                    "input_size": list(adapter.input_size),
                    "num_classes": int(adapter.num_classes),
                    "has_class_names": adapter.class_names is not None,
                }
                for name, adapter in service.models.items()
            ],
        }

    @app.get("/api/models/{name}/classes", summary="A model's class names, in output order")
    def classes(name: str) -> dict:
        adapter = service.model(name)
        names = adapter.class_names or [f"class {i}" for i in range(adapter.num_classes)]
        return {"model": adapter.name, "classes": list(names)}

    @app.get("/api/methods", summary="Model and static saliency methods with their defaults")
    def methods() -> dict:
        return {
            "model": [
                {
                    "name": spec.name,
                    "summary": spec.summary,
                    "family": spec.family,
                    "signed": spec.signed,
                    "defaults": json.loads(json.dumps(spec.defaults, default=repr)),
                }
                for spec in METHODS.values()
            ],
            "aliases": ALIASES,
            "static": [
                {
                    "name": spec.name,
                    "summary": spec.summary,
                    "reference": spec.reference,
                    "defaults": json.loads(json.dumps(spec.parameters(), default=repr)),
                }
                for spec in STATIC_METHODS.values()
            ],
        }

    @app.get("/api/colormaps", summary="Colour tables: 256×3 uint8 RGB, base64")
    def colormaps() -> dict:
        return {"names": list(COLORMAPS), "diverging": list(DIVERGING), "tables": colormap_tables()}


async def _image(request: Request, service: Service):
    """The form and its image: an upload (``image``) or a bundled photo (``sample``)."""
    form = await read_form(request, service.limits.image_bytes)
    if "image" in form.files:
        decoding = service.decoder.submit(decode_image, form.files["image"], service.limits)
        image = await asyncio.wrap_future(decoding)
        return form, image, "upload"
    sample = form.get("sample")
    if sample:
        return form, service.sample(sample), sample
    raise UploadError(400, "send an image file in the field 'image' or a bundled photo in 'sample'")


def _methods(form) -> list[str]:
    names = [name.strip() for value in form.getlist("method") for name in value.split(",")]
    return [name for name in names if name] or ["vanilla"]


def _explain_options(form) -> dict:
    options = method_options(form, _EXPLAIN_FIELDS)
    target = (form.get("target") or "").strip()
    options.update(target=target or None, score=form.get("score") or "logit")
    options.update(reduction=form.get("reduction") or "max-abs")
    return options


async def _run_gated(gate, work, *args):
    """``work(*args)`` on a worker thread, once ``gate`` admits it (503 when full)."""
    gate.admit()
    try:
        return await asyncio.wrap_future(gate.worker.submit(work, *args))
    finally:
        gate.leave()


def _check_explain(service: Service, form, methods: list[str], options: dict) -> None:
    """Refuse a bad request before any work (and before a job is queued)."""
    from salmap.methods import ALIASES, METHODS, method_parameters
    from salmap.models.classes import resolve_target

    adapter = service.model(form.get("model"))
    unknown = [m for m in methods if ALIASES.get(m, m) not in METHODS]
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r}; choose one of {', '.join(METHODS)}")
    params = set(options) - {"target", "score", "reduction"}
    taken = set().union(*(method_parameters(m, options) for m in methods))
    if params - taken:
        raise UsageError(
            f"no chosen method takes {', '.join(sorted(params - taken))}; "
            f"they take {', '.join(sorted(taken - {'score'})) or 'nothing'}"
        )
    if options["target"] is not None:
        resolve_target(options["target"], adapter.num_classes, adapter.class_names)


def _add_work_routes(app: FastAPI, service: Service) -> None:
    explain_fields = {
        "sample": "a bundled photo instead of an upload (chelsea, coffee, ...)",
        "model": "a model this server was started with (GET /api/models)",
        "method": "method name; several (repeated or comma-separated) make a background job",
        "target": "class index or name; default the top-1 class",
        "score": "logit (default) or probability",
        "reduction": "max-abs (default), sum-abs or sum (signed)",
        "background": "true: run as a background job even for one method",
        "steps, samples, sigma, baseline, layer, ...": "method parameters (GET /api/methods)",
    }

    @app.post(
        "/api/explain",
        summary="Explain a photo: target, label, score, top-5 and the map as a PNG data URL",
        openapi_extra=_form_body(explain_fields),
        responses={202: {"description": "a background job was started: {job, url}"}},
    )
    async def explain(request: Request):
        form, image, _name = await _image(request, service)
        methods, options = _methods(form), _explain_options(form)
        _check_explain(service, form, methods, options)
        model = form.get("model")
        if len(methods) == 1 and (form.get("background") or "").lower() not in ("1", "true"):
            gate = service.gates[service.model(model).name]
            answer = await _run_gated(gate, service.explain, image, model, methods, options)
            return answer["results"][0]
        job = service.jobs.submit(
            "explain", lambda job: service.explain(image, model, methods, options, job)
        )
        return _accepted(job)

    @app.post(
        "/api/static",
        summary="Static (bottom-up) saliency of a photo; Itti-Koch adds its scan path",
        openapi_extra=_form_body(
            {
                "sample": "a bundled photo instead of an upload",
                "method": "itti (default), spectral-residual, fine-grained, frequency-tuned, "
                "gbvs or bms",
                "parameters": "the model's keyword parameters (GET /api/methods)",
            }
        ),
    )
    async def static(request: Request):
        form, image, _name = await _image(request, service)
        params = method_options(form, _IMAGE_FIELDS | {"method"})
        method = form.get("method") or "itti"
        return await _run_gated(service.static_gate, service.static, image, method, params)

    _add_motion_route(app, service)
    _add_evaluate_route(app, service)


def _accepted(job) -> JSONResponse:
    return JSONResponse({"job": job.id, "url": f"/api/jobs/{job.id}"}, status_code=202)


_MOTION_OPTIONS = {"start", "end", "every", "max_width", "flow", "preset", "camera", "temporal"}


def _add_motion_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/api/motion",
        summary="Motion saliency of a video, as a background job writing an overlay video",
        openapi_extra=_form_body(
            {name: "as for salmap.motion_saliency" for name in sorted(_MOTION_OPTIONS)}, "video"
        ),
        responses={202: {"description": "the job: {job, url}"}},
    )
    async def motion(request: Request):
        form = await read_form(request, service.limits.video_bytes)
        if "video" not in form.files:
            raise UploadError(400, "send a video file in the field 'video'")
        options = method_options(form, set())
        unknown = sorted(set(options) - _MOTION_OPTIONS)
        if unknown:
            raise UsageError(
                f"motion takes no {', '.join(unknown)}; use {', '.join(sorted(_MOTION_OPTIONS))}"
            )
        options.setdefault("max_width", 320)
        found = {}

        def prepare(job):
            found["path"], found["info"] = save_video(
                form.files["video"], job.folder, service.limits
            )

        def work(job):
            return service.motion(found["path"], found["info"], options, job)

        job = await run_in_threadpool(service.jobs.submit, "motion", work, prepare)
        return _accepted(job)


def _add_evaluate_route(app: FastAPI, service: Service) -> None:
    from salmap.report import METRICS

    @app.post(
        "/api/evaluate",
        summary="An evaluation report (deletion, insertion, ...) as a background job",
        openapi_extra=_form_body(
            {
                "sample": "a bundled photo instead of an upload",
                "model": "a model this server was started with",
                "method": "methods to compare (repeated or comma-separated)",
                "metrics": f"comma-separated, from {', '.join(METRICS)} "
                "(default deletion,insertion)",
            }
        ),
        responses={202: {"description": "the job; its result names the report's URL"}},
    )
    async def evaluate(request: Request):
        form, image, name = await _image(request, service)
        methods = _methods(form)
        _check_explain(service, form, methods, {"target": None})
        metrics = [m.strip() for m in (form.get("metrics") or "deletion,insertion").split(",")]
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise UsageError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
        model = form.get("model")
        job = service.jobs.submit(
            "evaluate", lambda job: service.evaluate(image, name, model, methods, metrics, job)
        )
        return _accepted(job)


def _add_job_routes(app: FastAPI, service: Service) -> None:
    def find(job_id: str):
        job = service.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (unknown, or finished long ago)")
        return job

    @app.get("/api/jobs/{job_id}", summary="A background job: status, progress, result")
    def job_status(job_id: str) -> dict:
        return find(job_id).to_dict()

    @app.delete("/api/jobs/{job_id}", summary="Cancel a background job")
    def job_cancel(job_id: str) -> dict:
        find(job_id)
        return service.jobs.cancel(job_id).to_dict()

    @app.get("/api/jobs/{job_id}/report", summary="The evaluation report of a finished job")
    def job_report(job_id: str):
        path = find(job_id).folder / "report" / "index.html"
        if not path.is_file():
            raise HTTPException(404, "the report is not ready")
        return HTMLResponse(path.read_text(encoding="utf-8"))

    @app.get("/api/jobs/{job_id}/video", summary="The overlay video of a finished motion job")
    def job_video(job_id: str):
        path = find(job_id).folder / "motion.webm"
        if not path.is_file():
            raise HTTPException(404, "the video is not ready")
        return FileResponse(path, media_type="video/webm")

    _add_result_routes(app, service)


def _add_result_routes(app: FastAPI, service: Service) -> None:
    from salmap.web.encode import npy_bytes, png_bytes

    def find(result_id: str):
        result = service.result(result_id)
        if result is None:
            raise HTTPException(404, f"no result {result_id!r} (unknown, or dropped)")
        return result

    @app.get("/api/results/{result_id}/map.npy", summary="The raw map, H×W float32 (NumPy)")
    def result_npy(result_id: str):
        headers = {"Content-Disposition": f'attachment; filename="{result_id}_map.npy"'}
        data = npy_bytes(find(result_id).map)
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.get("/api/results/{result_id}/image.png", summary="The image the map explains")
    def result_image(result_id: str):
        return Response(png_bytes(find(result_id).image / 255.0), media_type="image/png")

    @app.get("/api/results/{result_id}/result.json", summary="The result's JSON summary")
    def result_json(result_id: str) -> dict:
        return find(result_id).summary
