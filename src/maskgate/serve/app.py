"""`maskgate serve`: the prediction core behind HTTP, for a door, a kiosk or another service.

- GET /health (alive), /ready (model loaded), /v1/model (what is loaded), /metrics (Prometheus), / (web page)
- POST /v1/predict: a photo as multipart field `image` or as the raw request body -> every face in it.

A public endpoint's limits: the body is counted as it arrives (413 past `max_bytes`, before it is all
read), the type is read from the bytes (415), the pixel count from the header before decoding (413),
bad images get 400 / 422, a bounded number of predictions may wait or run (`max_queue`; beyond it 503
with Retry-After instead of piling up), and each has a deadline (`timeout_s`; 503 past it). Every answer,
errors included, is JSON with `error` and `detail`. The model runs in its own threads (`threads`),
never on the event loop, so /health answers while photos are being classified.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Any, Callable

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, AgeBand, Gender, Mask, class_name, decode, marginals
from ..predict import FaceResult, Predictor, rescale_boxes
from .metrics import MULTIPROC_ENV, ServiceMetrics
from .uploads import UploadError, decode_upload


@dataclass
class ServeSettings:
    """Limits and sizes of one service instance (`maskgate serve` options)."""

    max_bytes: int = 20 * 1024 * 1024  # largest upload
    max_pixels: int = 50_000_000  # largest photo (width x height), checked before decoding
    threads: int = 2  # predictions run side by side (2 on 2 cores: 39 vs 30 requests/s, docs/benchmarks.md)
    max_queue: int = 32  # predictions waiting beyond the running ones; more -> 503 + Retry-After
    timeout_s: float = 30.0  # a prediction's deadline -> 503
    retry_after_s: int = 1
    # where faces are looked for, as `Predictor` keywords (faces/options.py; the --det-size ...
    # flags); empty = the model's own
    detection: dict = field(default_factory=dict)
    tta: str | None = None  # the mirror image: off | on | auto; None = the model's own (`maskgate serve --tta`)
    # load the model before taking connections (`--workers N` sets it): a worker process that is started
    # again after a crash then takes no request before it can answer it; otherwise it loads in the
    # background and /health answers at once (one process: the liveness probe of an orchestrator)
    load_at_startup: bool = False


class _BodyTooLarge(Exception):
    pass


class _Guard:
    """ASGI middleware: request metrics, and the upload limit counted as the body arrives.

    A declared Content-Length over the limit is refused at once (413); a chunked or lying body is
    stopped as soon as it passes the limit, so a huge upload is never held in memory.
    """

    def __init__(self, app, max_bytes: int, metrics: ServiceMetrics):
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def sent(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        seen = 0

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(f"upload passed {self.max_bytes} bytes, the limit")
            return msg

        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        try:
            if declared.isdigit() and int(declared) > self.max_bytes:
                self.metrics.errors.labels("too_large").inc()
                detail = f"upload of {int(declared)} bytes; the limit is {self.max_bytes}"
                await _error(413, "too_large", detail)(scope, receive, sent)
            else:
                await self.app(scope, counted, sent)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")  # route templates only: bounded label values
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)


def _error(status: int, kind: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)



def face_json(r: FaceResult, subject: bool) -> dict:
    m, g, a = decode(r.cls)
    pm, pg, pa = marginals(r.probs)

    def part(names: dict, enum, probs: np.ndarray, chosen: int) -> dict:
        return {"label": names[enum(chosen)], "prob": round(float(probs[chosen]), 4),
                "probs": {names[enum(i)]: round(float(v), 4) for i, v in enumerate(probs)}}

    return {"box": [round(float(v), 1) for v in r.box] if r.face_found else None,
            "found": r.face_found, "subject": subject, "det_score": round(r.det_score, 4),
            "class": r.cls, "class_name": class_name(r.cls), "confidence": round(r.confidence, 4),
            "mask": part(MASK_NAMES, Mask, pm, m), "gender": part(GENDER_NAMES, Gender, pg, g),
            "age_band": part(AGE_NAMES, AgeBand, pa, a)}


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The photo: multipart/form-data field `image`, or the raw image bytes as the body.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                               "properties": {"image": {"type": "string", "format": "binary"}}}},
            "image/jpeg": _IMAGE_BODY, "image/png": _IMAGE_BODY, "image/webp": _IMAGE_BODY,
            "application/octet-stream": _IMAGE_BODY,
        },
    }
}
_ERRORS = {s: {"description": d} for s, d in [
    (400, "empty or malformed upload"), (413, "upload or photo too large"), (415, "not an image"),
    (422, "unusable image or request"), (503, "model loading, queue full or deadline passed (Retry-After)")]}


def create_app(model: Any = None, settings: ServeSettings | None = None,
               predictor_factory: Callable[[], Predictor] | None = None,
               predictor: Predictor | None = None) -> FastAPI:
    """The service. `model`: what `Predictor` takes (None: the shipped model); `predictor_factory` builds the
    predictor instead, or `predictor` is one already loaded (a batch job or test sharing it). Otherwise the
    model loads in a thread at start-up: /health answers at once, /ready and /v1/predict once it is loaded."""
    s = settings or ServeSettings()
    metrics = ServiceMetrics()
    state: dict[str, Any] = {"predictor": predictor, "load_error": None, "inflight": 0, "pool": None}

    def pool() -> ThreadPoolExecutor:  # made per start-up (and on first use where no lifespan runs)
        if state["pool"] is None:
            state["pool"] = ThreadPoolExecutor(max_workers=max(1, s.threads), thread_name_prefix="maskgate-predict")
        return state["pool"]
    factory = predictor_factory or (lambda: Predictor(model, workers=1, tta=s.tta, **s.detection))
    metrics.ready.set(int(predictor is not None))

    def load() -> None:
        try:
            state["predictor"] = factory()
            metrics.ready.set(1)
        except Exception as e:  # noqa: BLE001 - reported by /ready and /v1/predict, the server stays up
            state["load_error"] = f"{type(e).__name__}: {e}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if state["predictor"] is None:
            if s.load_at_startup:  # uvicorn accepts on the shared socket only after this: the other workers answer
                await asyncio.to_thread(load)
            else:
                threading.Thread(target=load, name="maskgate-load", daemon=True).start()
        pool()
        yield
        done, state["pool"] = state["pool"], None
        done.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="maskgate", version=__version__, lifespan=lifespan,
                  description="Is a mask worn correctly, incorrectly or not at all; the wearer's gender and age band.")
    app.state.metrics, app.state.settings, app.state.service = metrics, s, state

    app.add_middleware(_Guard, max_bytes=s.max_bytes, metrics=metrics)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, e: UploadError):
        metrics.errors.labels(e.kind).inc()
        return _error(e.status, e.kind, e.message, e.headers)

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request: Request, e: _BodyTooLarge):
        metrics.errors.labels("too_large").inc()
        return _error(413, "too_large", str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        metrics.errors.labels("invalid_request").inc()
        detail = "; ".join(f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg')}" for err in e.errors())
        return _error(422, "invalid_request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "bad_request")
        return _error(e.status_code, kind, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # last resort: a JSON answer, the server stays up
        metrics.errors.labels("internal").inc()
        return _error(500, "internal", f"{type(e).__name__}: {e}")

    @app.get("/health", summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded", responses={503: {"description": "not yet, or failed"}})
    async def ready():
        if state["predictor"] is not None:
            return {"status": "ready"}
        if state["load_error"]:
            return _error(503, "model_failed", state["load_error"])
        return _error(503, "loading", "the model is loading", {"Retry-After": str(s.retry_after_s)})

    @app.get("/v1/model", summary="The loaded model: classes, preprocessing, training data and scores",
             responses={503: {"description": "model not loaded"}})
    async def model_info():
        pred: Predictor | None = state["predictor"]
        if pred is None:
            return _error(503, "loading", state["load_error"] or "the model is loading",
                          {"Retry-After": str(s.retry_after_s)})
        members = []
        for m, tta in zip(pred.models, pred.tta):
            members.append({"name": m.name, "runtime": m.kind, "input_size": m.preprocess.input_size,
                            "tta": tta, "tta_below": m.preprocess.tta_below,
                            "crop": asdict(m.preprocess.crop), "info": json.loads(json.dumps(m.info, default=str))})
        return {"classes": [class_name(k) for k in range(18)],
                "tasks": {"mask": list(MASK_NAMES.values()), "gender": list(GENDER_NAMES.values()),
                          "age_band": list(AGE_NAMES.values())},
                "detection": pred.cropper.settings.detection(), "models": members,
                "limits": asdict(s)}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("maskgate.serve").joinpath("static/index.html").read_text("utf-8"))

    async def read_photo(request: Request) -> tuple[bytes, str]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=4, max_fields=16)
            item = form.get("image")
            if item is None:
                fields = ", ".join(sorted(form.keys())) or "none"
                raise UploadError(422, "missing_field", f"no multipart field 'image' (fields sent: {fields})")
            if isinstance(item, str):
                raise UploadError(422, "missing_field", "field 'image' must be a file, not text")
            return await item.read(), item.filename or "image"
        if ctype in ("", "application/octet-stream") or ctype.startswith("image/"):
            return await request.body(), "body"
        raise UploadError(415, "unsupported_media_type",
                          f"content type {ctype!r}: send multipart/form-data with field 'image', or the image bytes")

    @app.post("/v1/predict", summary="Every face in a photo: mask state, gender, age band",
              openapi_extra=PREDICT_BODY, responses=_ERRORS)
    async def predict(request: Request,
                      fallback: bool = Query(False, description="no face found: classify the centre square "
                                                                "(marked found=false) instead of answering no faces"),
                      subject_only: bool = Query(False, description="only the photo's subject (face 0)")):
        pred: Predictor | None = state["predictor"]
        if pred is None:
            raise UploadError(503, "loading", state["load_error"] or "the model is loading",
                              {"Retry-After": str(s.retry_after_s)})
        if state["inflight"] >= s.threads + s.max_queue:  # shed load before reading the upload
            raise UploadError(503, "busy", f"{state['inflight']} predictions waiting or running; try again",
                              {"Retry-After": str(s.retry_after_s)})
        data, name = await read_photo(request)
        if not data:
            raise UploadError(400, "empty", "empty upload")

        def work():
            t0 = time.perf_counter()
            rgb, full = decode_upload(data, name, s.max_pixels)
            # boxes and size in the photo's own pixels, where the page draws them (a big JPEG is read smaller)
            results = rescale_boxes(pred.predict_image(rgb, all_faces=not subject_only), rgb.shape[:2], full)
            return full, results, time.perf_counter() - t0

        state["inflight"] += 1
        metrics.inflight.inc()
        fut = asyncio.get_running_loop().run_in_executor(pool(), work)

        def done(_):
            state["inflight"] -= 1
            metrics.inflight.dec()

        fut.add_done_callback(done)  # the slot frees when the work ends, even after a timeout answered it
        try:
            shape, results, seconds = await asyncio.wait_for(asyncio.shield(fut), s.timeout_s)
        except asyncio.TimeoutError:
            raise UploadError(503, "timeout", f"no answer within {s.timeout_s:g} s; try again",
                              {"Retry-After": str(s.retry_after_s)}) from None
        found = bool(results) and results[0].face_found
        if not fallback:
            results = [r for r in results if r.face_found]
        faces = [face_json(r, i == 0) for i, r in enumerate(results)]
        for f in faces:
            metrics.faces.labels(f["mask"]["label"]).inc()
        return {"faces": faces, "subject_found": found, "fallback_used": bool(results) and not found,
                "image": {"width": int(shape[1]), "height": int(shape[0])}, "seconds": round(seconds, 4)}

    return app


def app_from_env():
    """uvicorn factory for `--workers N` (each worker process builds its own app from MASKGATE_SERVE)."""
    import os

    cfg = json.loads(os.environ.get("MASKGATE_SERVE", "{}"))
    return create_app(cfg.pop("model", None), ServeSettings(**cfg.pop("settings", {})))


def serve(model: Any, host: str, port: int, workers: int, settings: ServeSettings, log_level: str = "info") -> None:
    import os
    import shutil
    import tempfile
    import warnings

    import uvicorn
    from PIL import Image

    # uploads are refused past --max-pixels from their header, before PIL's own (larger) bomb warning matters
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if workers > 1:  # separate processes, each with its own model: pass the options by environment
        # uvicorn starts a worker again when one dies; it takes connections once its model is loaded
        settings = replace(settings, load_at_startup=True)
        os.environ["MASKGATE_SERVE"] = json.dumps({"model": model, "settings": asdict(settings)})
        # /metrics for the whole service, whichever worker a scrape reaches: the workers (new processes,
        # which import prometheus_client after this) share their values through files in one folder, made
        # empty for this server unless the operator names one (then clearing it between runs is theirs)
        own = None
        if not (os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())):
            own = tempfile.mkdtemp(prefix="maskgate-metrics-")
            os.environ[MULTIPROC_ENV] = own
        try:
            uvicorn.run("maskgate.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                        log_level=log_level)
        finally:
            if own:
                shutil.rmtree(own, ignore_errors=True)
                os.environ.pop(MULTIPROC_ENV, None)
    else:
        uvicorn.run(create_app(model, settings), host=host, port=port, log_level=log_level)
