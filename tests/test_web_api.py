"""The web API with FastAPI's test client: every endpoint, every bad upload, the
queue, and that nothing a form says can read a file from the server."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import salmap  # noqa: E402
from salmap.web import Limits, create_app  # noqa: E402
from salmap.web.encode import display_values  # noqa: E402

pytestmark = pytest.mark.slow  # the real EfficientNet-Lite0


@pytest.fixture(scope="module")
def app(default_model):
    app = create_app(default_model)
    yield app
    app.state.service.close()


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


def _encoded(image: np.ndarray, kind: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, kind, quality=95)
    return buffer.getvalue()


def _decode_png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def _wait(client, url: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(url).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {url} still running after {seconds} s")


def _still_serving(client) -> None:
    assert client.get("/api/models").status_code == 200


# -- reading ---------------------------------------------------------------------------
def test_page_api_description_and_listings(client, default_model):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" not in page.text  # drawn by the script
    assert 'src="/static/salmap.js"' in page.text and "http" not in page.text.split("<body>")[0]
    assert client.get("/static/salmap.js").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in ("/api/explain", "/api/static", "/api/motion", "/api/jobs/{job_id}",
                 "/api/models", "/api/methods", "/api/evaluate"):  # fmt: skip
        assert path in schema["paths"]
    assert "image" in str(schema["paths"]["/api/explain"]["post"]["requestBody"])
    assert "/api/explain" in client.get("/api").text
    models = client.get("/api/models").json()
    assert models["default"] == "efficientnet_lite0"
    assert models["models"][0]["num_classes"] == 1000
    classes = client.get("/api/models/efficientnet_lite0/classes").json()["classes"]
    assert len(classes) == 1000 and classes[285] == "Egyptian cat"
    methods = client.get("/api/methods").json()
    assert [m["name"] for m in methods["model"]] == list(salmap.methods.METHODS)
    assert {m["name"] for m in methods["static"]} >= {"itti", "gbvs", "spectral-residual"}
    ig = next(m for m in methods["model"] if m["name"] == "integrated-gradients")
    assert (
        ig["defaults"]["steps"] == salmap.methods.METHODS["integrated-gradients"].defaults["steps"]
    )


def test_security_headers_and_trusted_hosts(client, default_model):
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    local = create_app(default_model, hosts=["127.0.0.1", "localhost"])
    with TestClient(local, base_url="http://127.0.0.1:8000") as near:
        assert near.get("/api/models").status_code == 200
        rebound = near.get("/api/models", headers={"host": "attacker.example:8000"})
        assert rebound.status_code == 400


def test_colormap_tables_are_matplotlibs(client):
    import matplotlib

    answer = client.get("/api/colormaps").json()
    for name in answer["names"]:
        table = np.frombuffer(base64.b64decode(answer["tables"][name]), np.uint8).reshape(256, 3)
        expected = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255
        assert np.abs(table - expected).max() <= 0.5 + 1e-9
    assert "RdBu_r" in answer["diverging"]


def test_sample_photo(client, chelsea):
    answer = client.get("/api/samples/chelsea.png")
    assert answer.headers["content-type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(answer.content)), np.float32) / 255
    assert pixels.shape == chelsea.shape and np.abs(pixels - chelsea).max() <= 0.5 / 255 + 1e-6
    assert client.get("/api/samples/passwd.png").status_code == 400


# -- explaining --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP"])
def test_explain_upload_matches_the_python_api(client, default_model, chelsea, kind):
    data = _encoded(chelsea, kind)
    answer = client.post(
        "/api/explain", files={"image": ("photo.bin", data)}, data={"method": "grad-cam"}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["target"], result["label"]) == (285, "Egyptian cat")
    direct = salmap.explain(
        salmap.load_image(data), model=default_model, method="grad-cam", target=285
    )
    assert result["score"] == pytest.approx(direct.score, rel=1e-5)
    assert [p["index"] for p in result["predictions"]] == [i for i, _, _ in direct.predictions]
    probabilities = [p["probability"] for p in result["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    raw = np.load(io.BytesIO(client.get(result["npy"]).content))
    np.testing.assert_allclose(raw, direct.map, rtol=1e-5, atol=1e-7)
    grey = _decode_png(result["map"])
    expected = np.round(display_values(direct.map, False, "percentile") * 255)
    assert grey.shape == (300, 451) and np.abs(grey - expected).max() <= 1
    image = client.get(result["image"])
    assert Image.open(io.BytesIO(image.content)).size == (451, 300)
    summary = client.get(result["json"]).json()
    assert summary["label"] == "Egyptian cat" and summary["shape"] == [300, 451]


def test_explain_other_target_parameters_and_signed_maps(client, default_model):
    answer = client.post(
        "/api/explain",
        data={
            "sample": "chelsea",
            "method": "ig",
            "target": "tiger cat",
            "steps": "8",
            "reduction": "sum",
        },  # fmt: skip
    ).json()
    assert (answer["target"], answer["method"], answer["params"]["steps"]) == (
        282,
        "integrated-gradients",
        8,
    )
    assert answer["signed"] and answer["normalize"] == "signed"
    raw = np.load(io.BytesIO(client.get(answer["npy"]).content))
    assert raw.min() < 0 < raw.max()
    grey = _decode_png(answer["map"]).astype(float)
    # Zero evidence is drawn mid-scale; the sign of each pixel survives the encoding.
    strong = np.abs(raw) > np.percentile(np.abs(raw), 90)
    assert np.all((grey[strong] > 127.5) == (raw[strong] > 0))


def test_several_methods_run_as_a_job(client):
    answer = client.post(
        "/api/explain", data={"sample": "coffee", "method": ["vanilla", "grad-cam,eigen-cam"]}
    )
    assert answer.status_code == 202
    job = _wait(client, answer.json()["url"])
    assert job["status"] == "done", job
    results = job["result"]["results"]
    assert [r["method"] for r in results] == ["vanilla", "grad-cam", "eigen-cam"]
    assert {r["label"] for r in results} == {"espresso"}
    assert job["progress"]["done"] == job["progress"]["total"] == 3


def test_a_job_can_be_cancelled(client):
    slow = client.post(
        "/api/explain",
        data={
            "sample": "chelsea",
            "method": "smoothgrad,smoothgrad,smoothgrad,smoothgrad",
            "samples": "16",
        },  # fmt: skip
    ).json()
    cancelled = client.delete(slow["url"]).json()
    assert cancelled["status"] in ("queued", "running", "cancelled")
    job = _wait(client, slow["url"])
    assert job["status"] == "cancelled" and job["result"] is None
    assert client.delete("/api/jobs/0123456789abcdef").status_code == 404


def test_static_saliency_with_scan_path(client):
    answer = client.post("/api/static", data={"sample": "coffee", "fixations": "4"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["method"] == "itti" and len(result["scan_path"]) == 4
    direct = salmap.static_saliency("coffee", method="itti", fixations=4)
    np.testing.assert_allclose(result["scan_path"], direct.extras["scan_path"], atol=0.05)
    other = client.post("/api/static", data={"sample": "coffee", "method": "spectral-residual"})
    assert other.json()["shape"] == [400, 600] and "scan_path" not in other.json()
    bad = client.post("/api/static", data={"sample": "coffee", "method": "telepathy"})
    assert bad.status_code == 400 and "telepathy" in bad.json()["error"]


def _synthetic_avi(path, frames: int = 16):
    from salmap.io.video import VideoWriter
    from salmap.motion import synthetic_video

    masks = []
    with VideoWriter(path, fps=10) as writer:
        for frame, mask in synthetic_video(frames, (160, 120), objects=1, speed=3.0, seed=1):
            writer.write(frame)
            masks.append(mask)
    return masks


def test_motion_job_writes_an_overlay_video_where_things_move(client, tmp_path):
    import cv2

    masks = _synthetic_avi(tmp_path / "clip.avi")
    answer = client.post(
        "/api/motion", files={"video": ("clip.txt", (tmp_path / "clip.avi").read_bytes())}
    )
    assert answer.status_code == 202, answer.text
    job = _wait(client, answer.json()["url"])
    assert job["status"] == "done", job
    result = job["result"]
    assert (result["frames"], result["width"], result["height"]) == (16, 160, 120)
    video = client.get(result["video"])
    assert video.headers["content-type"] == "video/webm"
    assert video.content[:4] == b"\x1a\x45\xdf\xa3"  # EBML: WebM
    (tmp_path / "overlay.webm").write_bytes(video.content)
    capture = cv2.VideoCapture(str(tmp_path / "overlay.webm"))
    source = cv2.VideoCapture(str(tmp_path / "clip.avi"))
    inside, outside = [], []
    for index in range(16):
        ok, overlay = capture.read()
        ok_source, frame = source.read()
        assert ok and ok_source
        change = np.abs(overlay.astype(float) - frame.astype(float)).sum(axis=2)
        if index > 2:
            inside.append(change[masks[index]].mean())
            outside.append(change[~masks[index]].mean())
    assert np.mean(inside) > 2 * np.mean(outside)


def test_evaluation_report_job(client):
    answer = client.post(
        "/api/evaluate", data={"sample": "chelsea", "method": "grad-cam", "metrics": "deletion"}
    )
    assert answer.status_code == 202, answer.text
    job = _wait(client, answer.json()["url"], seconds=300)
    assert job["status"] == "done", job
    report = client.get(job["result"]["report"])
    assert report.headers["content-type"].startswith("text/html")
    assert "Deletion AUC" in report.text and "grad-cam" in report.text
    bad = client.post("/api/evaluate", data={"sample": "chelsea", "metrics": "vibes"})
    assert bad.status_code == 400 and "vibes" in bad.json()["error"]


# -- bad requests ----------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _bomb(width: int, height: int) -> bytes:
    """A valid grey PNG of width×height zero pixels: a few KiB that decode to far more."""
    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(b"\x00" * (width + 1)) for _ in range(height)) + rows.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))  # fmt: skip


def _bad_images(chelsea):
    png = _encoded(chelsea, "PNG")
    header = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 0, 0, 0, 0)
    return {
        "text": (b"Dear server, please explain this.\n" * 10, 415),
        "empty": (b"", 422),
        "truncated": (png[: len(png) // 2], 422),
        "bomb": (_bomb(8000, 8000), 413),  # 64 MP in ~60 KiB
        "huge header": (  # 40 billion pixels declared, a few bytes of data
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
            + _png_chunk(b"IEND", b""),
            413,
        ),
        "path": (b"/etc/passwd", 415),
    }


@pytest.mark.parametrize("name", ["text", "empty", "truncated", "bomb", "huge header", "path"])
def test_bad_image_uploads_are_refused_and_the_server_keeps_serving(client, chelsea, name):
    data, status = _bad_images(chelsea)[name]
    for path in ("/api/explain", "/api/static"):
        answer = client.post(path, files={"image": ("cat.jpg", data, "image/jpeg")})
        assert answer.status_code == status, (path, answer.text)
        error = answer.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error
    _still_serving(client)


@pytest.fixture
def small_limits(app):
    service = app.state.service
    saved = service.limits
    service.limits = Limits(image_bytes=100_000, video_bytes=60_000, video_frames=10)
    yield service.limits
    service.limits = saved


def test_too_large_uploads_answer_413(client, small_limits, tmp_path):
    noise = np.random.default_rng(0).random((300, 300, 3))
    data = _encoded(noise, "PNG")
    assert len(data) > small_limits.image_bytes
    answer = client.post("/api/explain", files={"image": ("noise.png", data)})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    _synthetic_avi(tmp_path / "long.avi", frames=16)
    video = (tmp_path / "long.avi").read_bytes()
    answer = client.post("/api/motion", files={"video": ("long.avi", video)})
    assert answer.status_code == 413, answer.text  # 16 frames > 10, or bytes
    _still_serving(client)


def test_unsupported_videos_answer_415(client, chelsea, tmp_path):
    _synthetic_avi(tmp_path / "clip.avi", frames=8)
    avi = (tmp_path / "clip.avi").read_bytes()
    bad = {
        "text": b"not a video at all\n" * 50,
        "image": _encoded(chelsea, "PNG"),
        "truncated": avi[:600],
        "fake mp4": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500,
    }
    for name, data in bad.items():
        answer = client.post("/api/motion", files={"video": ("clip.mp4", data)})
        assert answer.status_code == 415, (name, answer.text)
    assert client.post("/api/motion", data={"every": "2"}).status_code == 400
    unknown = client.post("/api/motion", files={"video": ("c.avi", avi)}, data={"speed": "1"})
    assert unknown.status_code == 400 and "speed" in unknown.json()["error"]
    _still_serving(client)


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"sample": "chelsea", "method": "telepathy"}, 400, "unknown method"),
        ({"sample": "chelsea", "target": "unicorn"}, 400, "unicorn"),
        ({"sample": "chelsea", "target": "1000"}, 400, "out of range"),
        ({"sample": "chelsea", "method": "vanilla", "steps": "8"}, 400, "steps"),
        ({"sample": "chelsea", "method": "ig", "steps": "100000"}, 400, "too large"),
        ({"sample": "chelsea", "model": "resnet50"}, 400, "unknown model"),
        ({}, 400, "image"),
    ],
)
def test_bad_forms_answer_4xx_json(client, fields, status, words):
    answer = client.post("/api/explain", data=fields)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    _still_serving(client)


SECRET = "root:x:0:0"


@pytest.mark.parametrize(
    "fields",
    [
        {"sample": "/etc/passwd"},
        {"sample": "../../../../etc/passwd"},
        {"sample": "chelsea", "model": "/etc/passwd"},
        {"sample": "chelsea", "target": "/etc/passwd"},
        {"sample": "chelsea", "method": "ig", "baseline": "/etc/passwd", "steps": "4"},
        {"sample": "chelsea", "method": "grad-cam", "layer": "/etc/passwd"},
    ],
)
def test_a_path_in_a_form_field_reads_no_file(client, fields):
    for route in ("/api/explain", "/api/evaluate"):
        answer = client.post(route, data=fields)
        if route == "/api/evaluate" and set(fields) & {"baseline", "layer", "target"}:
            continue  # parameters the report does not take
        assert answer.status_code == 400, (route, answer.text)
        assert SECRET not in answer.text
    for url in (
        "/api/jobs/..%2F..%2Fetc%2Fpasswd/report",
        "/static/../../etc/passwd",
        "/api/results/..%2Fetc%2Fpasswd/map.npy",
        "/api/samples/..%2Fetc%2Fpasswd.png",
    ):
        answer = client.get(url)
        assert answer.status_code in (400, 404) and SECRET not in answer.text


# -- queues ----------------------------------------------------------------------------
def test_gate_admits_one_running_plus_its_queue():
    from salmap.web.jobs import Busy, Gate

    gate = Gate("model m", queue=2)
    for _ in range(3):
        gate.admit()
    with pytest.raises(Busy) as refused:
        gate.admit()
    assert refused.value.retry_after > 0 and "busy" in str(refused.value)
    gate.leave()
    gate.admit()


def test_a_full_queue_answers_503_with_retry_after(client, app):
    gate = app.state.service.gates["efficientnet_lite0"]
    for _ in range(gate.queue + 1):
        gate.admit()
    try:
        answer = client.post("/api/explain", data={"sample": "chelsea"})
        assert answer.status_code == 503
        assert int(answer.headers["retry-after"]) > 0 and "queue" in answer.json()["error"]
        assert client.post("/api/static", data={"sample": "coffee"}).status_code == 200
    finally:
        for _ in range(gate.queue + 1):
            gate.leave()
    assert client.post("/api/explain", data={"sample": "chelsea"}).status_code == 200


# -- salmap serve ---------------------------------------------------------------------
def test_serve_listens_on_loopback_unless_told(monkeypatch, capfd, app):
    """``salmap serve`` in this process, with uvicorn's loop replaced by a look at the
    socket it was handed (the bench runs the real server in its own process)."""
    import socket

    import uvicorn

    import salmap.web
    from salmap.cli import main

    bound = []

    def look(self, sockets=None):
        bound.append(sockets[0].getsockname()[0])
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", look)
    monkeypatch.setattr(salmap.web, "create_app", lambda *args, **kwargs: app)
    assert main(["serve", "--port", "0"]) == 0
    captured = capfd.readouterr()
    assert bound == ["127.0.0.1"] and captured.err == ""
    assert captured.out.startswith("salmap: serving on http://127.0.0.1:")
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 0
    assert bound[-1] == "0.0.0.0"
    assert "warning: listening on 0.0.0.0" in capfd.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    error = capfd.readouterr().err
    assert error.startswith("salmap: error: cannot listen on 127.0.0.1:") and error.count("\n") == 1
    assert main(["serve", "--port", "70000"]) == 2
    assert "port must be in 0..65535" in capfd.readouterr().err


def _burst(url: str, count: int, concurrency: int) -> list:
    import asyncio

    import httpx

    async def run():
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=120) as client:

            async def one(index):
                async with limit:
                    fields = {"sample": ("coffee", "chelsea")[index % 2], "method": "vanilla"}
                    return await client.post(url + "/api/explain", data=fields)

            return await asyncio.gather(*(one(i) for i in range(count)))

    return asyncio.run(run())


def test_concurrent_requests_on_loopback_queue_or_503(app):
    from web_server import running_server

    gate = app.state.service.gates["efficientnet_lite0"]
    with running_server(app) as url:
        answers = _burst(url, 10, concurrency=8)  # 8 in flight fit 1 running + 8 waiting
        assert [a.status_code for a in answers] == [200] * 10
        assert {a.json()["label"] for a in answers} == {"espresso", "Egyptian cat"}
        saved, gate.queue = gate.queue, 1
        try:
            answers = _burst(url, 16, concurrency=8)
        finally:
            gate.queue = saved
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2
        assert all(a.headers["retry-after"] for a in answers if a.status_code == 503)
        assert _burst(url, 1, 1)[0].status_code == 200
