"""`maskgate serve`: every endpoint and every refusal, on the real model (ONNX runtime, no stand-ins)."""
import io
import threading
import time
import zlib
import struct

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from maskgate.models.runtime import default_model_path
from maskgate.predict import Predictor
from maskgate.serve.app import ServeSettings, create_app

ONNX = default_model_path("onnx")


def _jpeg(rgb: np.ndarray, q: int = 90) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()


def _wait_ready(c: TestClient) -> None:
    for _ in range(300):
        if c.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(c.get("/ready").json())


@pytest.fixture(scope="module")
def shared_predictor():
    return Predictor(ONNX, workers=1)


@pytest.fixture(scope="module")
def client(shared_predictor):
    app = create_app(settings=ServeSettings(max_bytes=3_000_000, max_pixels=6_000_000),
                     predictor_factory=lambda: shared_predictor)
    with TestClient(app, raise_server_exceptions=False) as c:
        _wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def photo(astronaut):
    return _jpeg(astronaut)


def _still_up(c: TestClient) -> None:
    assert c.get("/health").json() == {"status": "ok"}


def test_health_ready_model_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    m = client.get("/v1/model").json()
    assert len(m["classes"]) == 18 and m["classes"][0] == "wear/male/<30"
    assert m["tasks"]["mask"] == ["wear", "incorrect", "not_wear"]
    (member,) = m["models"]
    assert member["runtime"] == "onnx" and member["input_size"] == 160
    assert member["crop"]["detector"] == "retinaface" and "sources" in member["info"]  # training data recorded
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body


def test_predict_multipart_and_raw_body_agree(client, photo):
    a = client.post("/v1/predict", files={"image": ("a.jpg", photo, "image/jpeg")})
    b = client.post("/v1/predict", content=photo, headers={"content-type": "image/jpeg"})
    c = client.post("/v1/predict", content=photo)  # no content type: the bytes decide
    assert a.status_code == b.status_code == c.status_code == 200
    fa = a.json()["faces"]
    assert fa == b.json()["faces"] == c.json()["faces"]
    (face,) = fa
    assert face["found"] and face["subject"] and a.json()["subject_found"] and not a.json()["fallback_used"]
    x1, y1, x2, y2 = face["box"]
    assert 100 < x1 < x2 < 300 and 0 < y1 < y2 < 250  # the astronaut's face (512 x 512 photo)
    assert face["mask"]["label"] == "not_wear" and face["gender"]["label"] == "female"
    assert abs(sum(face["mask"]["probs"].values()) - 1) < 1e-3
    assert face["class_name"] == f"{face['mask']['label']}/{face['gender']['label']}/{face['age_band']['label']}"
    assert a.json()["image"] == {"width": 512, "height": 512}


def test_predict_same_answer_as_the_prediction_core(client, shared_predictor, astronaut, astronaut_face):
    from maskgate.demo import draw_mask

    worn = draw_mask(astronaut, astronaut_face.landmarks, worn=True)
    data = _jpeg(worn)
    core = shared_predictor.predict_image(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1])
    face = client.post("/v1/predict", content=data).json()["faces"][0]
    assert face["class"] == core[0].cls and face["mask"]["label"] == "wear"
    assert face["confidence"] == pytest.approx(core[0].confidence, abs=1e-4)


def test_no_face_empty_list_and_fallback(client):
    blank = _jpeg(np.full((240, 320, 3), 128, np.uint8))
    r = client.post("/v1/predict", content=blank).json()
    assert r["faces"] == [] and not r["subject_found"] and not r["fallback_used"]
    r = client.post("/v1/predict?fallback=true", content=blank).json()
    assert len(r["faces"]) == 1 and r["faces"][0]["found"] is False and r["faces"][0]["box"] is None
    assert r["fallback_used"]


def _png_bomb(side: int = 12000) -> bytes:
    """A valid PNG of side x side grey pixels, ~100 kB compressed."""
    raw = zlib.compress(b"".join(b"\x00" + bytes(side) for _ in range(side)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case", ["png_bomb", "truncated_jpeg", "text_as_jpg", "empty", "huge", "huge_chunked",
                                  "wrong_field", "text_field", "wrong_type", "tiny", "gif"])
def test_bad_uploads_get_clear_json_errors_and_the_server_stays_up(client, photo, case):
    big = b"\xff\xd8" + bytes(3_100_000)
    tiny = io.BytesIO()
    Image.new("RGB", (4, 4)).save(tiny, "PNG")
    gif = io.BytesIO()
    Image.new("RGB", (64, 64)).save(gif, "GIF")
    send = {
        "png_bomb": dict(files={"image": ("b.png", _png_bomb(), "image/png")}),
        "truncated_jpeg": dict(files={"image": ("t.jpg", photo[: len(photo) // 2], "image/jpeg")}),
        "text_as_jpg": dict(files={"image": ("x.jpg", b"just some text, not a photo", "image/jpeg")}),
        "empty": dict(content=b"", headers={"content-type": "image/jpeg"}),
        "huge": dict(content=big, headers={"content-type": "image/jpeg"}),
        "huge_chunked": dict(content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                             headers={"content-type": "image/jpeg"}),
        "wrong_field": dict(files={"photo": ("a.jpg", photo, "image/jpeg")}),
        "text_field": dict(data={"image": "not a file"}, files={"other": ("a.txt", b"x", "text/plain")}),
        "wrong_type": dict(content=photo, headers={"content-type": "application/json"}),
        "tiny": dict(content=tiny.getvalue(), headers={"content-type": "image/png"}),
        "gif": dict(content=gif.getvalue(), headers={"content-type": "image/gif"}),
    }[case]
    want = {"png_bomb": (413, "too_large"), "truncated_jpeg": (422, "corrupt"), "text_as_jpg": (415, "not_image"),
            "empty": (400, "empty"), "huge": (413, "too_large"), "huge_chunked": (413, "too_large"),
            "wrong_field": (422, "missing_field"), "text_field": (422, "missing_field"),
            "wrong_type": (415, "unsupported_media_type"), "tiny": (422, "too_small"), "gif": (415, "not_image")}[case]
    r = client.post("/v1/predict", **send)
    assert (r.status_code, r.json()["error"]) == want, r.text
    assert r.json()["detail"]
    _still_up(client)


def test_unknown_paths_and_methods_are_json(client):
    assert client.get("/nope").status_code == 404 and client.get("/nope").json()["error"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = client.post("/v1/predict?fallback=maybe", content=b"x")
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_metrics_count_requests_faces_and_errors(client, photo):
    client.post("/v1/predict", content=photo)
    client.post("/v1/predict", content=b"not an image")
    text = client.get("/metrics").text
    line = lambda prefix: next(float(s.rsplit(" ", 1)[1]) for s in text.splitlines() if s.startswith(prefix))  # noqa: E731
    assert line('maskgate_requests_total{endpoint="/v1/predict",method="POST",status="200"}') >= 1
    assert line('maskgate_faces_total{mask="not_wear"}') >= 1
    assert line('maskgate_errors_total{kind="not_image"}') >= 1
    assert line('maskgate_request_seconds_count{endpoint="/v1/predict"}') >= 2
    assert line("maskgate_model_ready") == 1


class _Gated(Predictor):
    """The real predictor, held at a gate: lets a test fill the queue or pass the deadline deterministically."""

    gate: threading.Event

    def predict_image(self, rgb, all_faces=True):
        self.gate.wait(20)
        return super().predict_image(rgb, all_faces)


@pytest.fixture()
def gated(shared_predictor):
    p = _Gated.__new__(_Gated)
    p.__dict__.update(shared_predictor.__dict__)
    p.gate = threading.Event()
    return p


def test_full_queue_answers_503_with_retry_after_then_recovers(gated, photo):
    app = create_app(settings=ServeSettings(threads=1, max_queue=2), predictor_factory=lambda: gated)
    with TestClient(app) as c:
        _wait_ready(c)
        out: list = []
        th = [threading.Thread(target=lambda: out.append(c.post("/v1/predict", content=photo).status_code))
              for _ in range(3)]
        for t in th:
            t.start()
        for _ in range(200):  # 1 running + 2 waiting
            if app.state.service["inflight"] == 3:
                break
            time.sleep(0.02)
        r = c.post("/v1/predict", content=photo)
        assert r.status_code == 503 and r.json()["error"] == "busy" and r.headers["retry-after"] == "1"
        assert c.get("/health").status_code == 200  # the event loop is not blocked by the model
        gated.gate.set()
        for t in th:
            t.join(30)
        assert out == [200, 200, 200]  # nothing admitted was lost
        assert c.post("/v1/predict", content=photo).status_code == 200


def test_deadline_answers_503(gated, photo):
    app = create_app(settings=ServeSettings(timeout_s=0.3), predictor_factory=lambda: gated)
    with TestClient(app) as c:
        _wait_ready(c)
        r = c.post("/v1/predict", content=photo)
        assert r.status_code == 503 and r.json()["error"] == "timeout" and "retry-after" in r.headers
        gated.gate.set()
        assert c.post("/v1/predict", content=photo).status_code == 200


def test_concurrent_requests_all_served(client, photo):
    results: list = []

    def one():
        results.append(client.post("/v1/predict", content=photo).status_code)

    th = [threading.Thread(target=one) for _ in range(8)]
    for t in th:
        t.start()
    for t in th:
        t.join(60)
    assert results == [200] * 8


def test_model_that_fails_to_load_is_reported_not_crashed(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with TestClient(create_app(str(bad))) as c:
        for _ in range(100):
            r = c.get("/ready")
            if r.json().get("error") == "model_failed":
                break
            time.sleep(0.05)
        assert r.status_code == 503 and "broken.onnx" in r.json()["detail"]
        assert c.get("/health").status_code == 200
        r = c.post("/v1/predict", content=b"x")
        assert r.status_code == 503 and "broken.onnx" in r.json()["detail"]


def test_web_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "getUserMedia" in r.text and "/v1/predict" in r.text
    assert 'name="viewport"' in r.text  # usable on a phone


def test_detection_flags_reach_the_service(monkeypatch, capsys):
    """`maskgate serve --det-size 448 --det-retry 0` looks for faces as told (ServeSettings.detection, passed
    to each worker's Predictor; /v1/model reports it), and a bad flag stops the command before it serves."""
    from maskgate.cli import main

    app = create_app(ONNX, ServeSettings(detection={"det_size": 448, "det_retry": 0}))
    with TestClient(app) as c:
        _wait_ready(c)
        det = c.get("/v1/model").json()["detection"]
    assert det["det_max_side"] == 448 and det["det_retry_side"] is None and det["weak_score"] == 0.2
    started = []
    monkeypatch.setattr("maskgate.serve.app.serve", lambda *a, **k: started.append(a))
    assert main(["serve", "--det-retry-below", "2"]) != 0
    assert "face.det_retry_below (--det-retry-below) must be in (0, 1]" in capsys.readouterr().err
    assert not started


def test_a_jpeg_over_max_pixels_is_read_smaller_and_answered_in_its_own_pixels(shared_predictor, astronaut):
    """A photo over --max-pixels that is a JPEG: decoded at 1/2 (or less) instead of refused; the size and the boxes
    in the answer are the photo's own, where the page draws them (not the smaller array's)."""
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # 1.05 MP
    app = create_app(settings=ServeSettings(max_bytes=3_000_000, max_pixels=600_000),
                     predictor_factory=lambda: shared_predictor)
    with TestClient(app, raise_server_exceptions=False) as c:
        _wait_ready(c)
        r = c.post("/v1/predict", content=_jpeg(big))
        assert r.status_code == 200, r.text
        png = io.BytesIO()
        Image.fromarray(big).save(png, "PNG")
        refused = c.post("/v1/predict", content=png.getvalue(), headers={"content-type": "image/png"})
        _still_up(c)
    j = r.json()
    assert j["image"] == {"width": 1024, "height": 1024}
    assert (refused.status_code, refused.json()["error"]) == (413, "too_large")  # a PNG cannot be read smaller
    # the same face found on the photo at 512 px (as the JPEG decoder gave it), then scaled by 2
    want = shared_predictor.predict_image(cv2.resize(big, (512, 512), interpolation=cv2.INTER_AREA))[0].box * 2
    assert j["faces"][0]["subject"] and np.abs(np.array(j["faces"][0]["box"]) - want).max() < 12
    assert 150 < j["faces"][0]["box"][0] < 600  # the astronaut's face, in 1024 px coordinates


def test_a_heic_photo_from_a_phone_is_answered(client, astronaut):
    heic = io.BytesIO()
    Image.fromarray(astronaut).save(heic, "HEIF", quality=90)
    r = client.post("/v1/predict", content=heic.getvalue(), headers={"content-type": "image/heic"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["image"] == {"width": 512, "height": 512} and j["subject_found"] and j["faces"][0]["mask"]["label"]


def _children(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker), from /proc."""
    import os

    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            cmd = open(f"/proc/{d}/cmdline", "rb").read()
        except OSError:
            continue
        if ppid == pid and b"resource_tracker" not in cmd:
            out.append(int(d))
    return sorted(out)


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="finds the worker processes through /proc")
def test_a_worker_killed_under_load_is_replaced_and_no_request_after_it_fails(photo):
    """`serve --workers 2` under load: a worker is SIGKILLed (out of memory, a crash); only the requests it
    was answering are lost, the other worker takes the rest, uvicorn starts a new one, which takes no request
    before its model is loaded (no 503s); then the other original worker is killed and the new one answers."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([sys.executable, "-m", "maskgate", "serve", "--workers", "2", "--port", str(port),
                            "--model", str(ONNX)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    results, lock, stop = [], threading.Lock(), threading.Event()

    def client():  # a new connection per request, as many camera clients and scripts do
        with httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    code = c.post("/v1/predict", content=photo, headers={"content-type": "image/jpeg"}).status_code
                except httpx.TransportError as e:
                    code = type(e).__name__
                with lock:
                    results.append((t, code))

    def replaced(victim: int, deadline_s: float = 60) -> None:
        end = time.time() + deadline_s
        while time.time() < end:
            now = _children(srv.pid)
            if len(now) == 2 and victim not in now:
                return
            time.sleep(0.05)
        raise AssertionError(f"no new worker within {deadline_s} s: {_children(srv.pid)}")

    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert srv.poll() is None, srv.stderr.read()
            time.sleep(0.1)
        workers = _children(srv.pid)
        assert len(workers) == 2, workers
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        kills = []
        for victim in workers:  # the first, then (once replaced) the second: the new one must be serving
            os.kill(victim, signal.SIGKILL)
            kills.append(time.perf_counter())
            replaced(victim)
            time.sleep(3)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        srv.terminate()
        srv.wait(30)
    codes = [c for _, c in results]
    assert all(c == 200 for c in codes if isinstance(c, int)), sorted(set(map(str, codes)))  # no 503 while loading
    failed = [t for t, c in results if not isinstance(c, int)]
    # lost: only requests in flight on a killed worker (sent before a kill), at most one per client per kill
    assert len(failed) <= 4 * len(kills)
    assert all(any(k - 30 < t < k + 0.2 for k in kills) for t in failed)
    after_both = [c for t, c in results if t > kills[-1] + 0.5]
    assert len(after_both) >= 10 and all(c == 200 for c in after_both)


def test_workers_listen_on_a_socket_whose_connections_get_tcp_nodelay():
    """`serve --workers N` hands uvicorn's supervisor socket to the workers; asyncio sets TCP_NODELAY on
    accepted connections only when that socket says IPPROTO_TCP. uvicorn 0.54 left it 0 (uvicorn#3149): Nagle
    plus delayed ACKs added ~43 ms to every keep-alive request (single-photo latency 60 instead of 17 ms here).
    The pinned uvicorn must bind it as TCP, and an accepted connection must come out with TCP_NODELAY on."""
    import asyncio
    import socket

    import uvicorn

    sock = uvicorn.Config("maskgate.serve.app:app_from_env", host="127.0.0.1", port=0).bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP

        async def accepted_nodelay() -> int:
            got: asyncio.Future = asyncio.get_running_loop().create_future()

            class P(asyncio.Protocol):
                def connection_made(self, transport):
                    s = transport.get_extra_info("socket")
                    got.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    transport.close()

            server = await asyncio.get_running_loop().create_server(P, sock=sock)
            with socket.create_connection(sock.getsockname()[:2]):
                value = await asyncio.wait_for(got, 10)
            server.close()
            return value

        assert asyncio.run(accepted_nodelay()) != 0
    finally:
        sock.close()


def _scrape(base: str) -> dict:
    """One /metrics answer on a new connection (any worker), as {(sample name, sorted labels): value}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base + "/metrics", headers={"connection": "close"}, timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="finds the worker processes through /proc")
def test_metrics_with_workers_report_the_whole_service(photo, tmp_path):
    """`serve --workers 2`: a scrape reaches one worker at random, yet every /metrics answer counts the requests
    of both (each worker's own counts differ); a killed worker's counts stay in the service's totals, its
    replacement is counted once loaded; the shared folder is the server's own and is removed when it stops."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    import json

    import httpx
    from prometheus_client.mmap_dict import MmapedDict

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    srv = subprocess.Popen([sys.executable, "-m", "maskgate", "serve", "--workers", "2", "--port", str(port),
                            "--model", str(ONNX)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**env, "TMPDIR": str(tmp_path)})
    base = f"http://127.0.0.1:{port}"
    ok = ("maskgate_requests_total", (("endpoint", "/v1/predict"), ("method", "POST"), ("status", "200")))
    ready = ("maskgate_model_ready", ())

    def own_counts(folder: str, pid: int) -> float:  # one worker's own count of answered photos
        d = MmapedDict(os.path.join(folder, f"counter_{pid}.db"), read_mode=True)
        try:
            keys = [(json.loads(k), v) for k, v, *_ in d.read_all_values()]
            return sum(v for (_, name, labels, *_), v in keys if name == "maskgate_requests_total"
                       and labels == {"endpoint": "/v1/predict", "method": "POST", "status": "200"})
        finally:
            d.close()

    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert srv.poll() is None, srv.stderr.read()
            time.sleep(0.1)
        workers = _children(srv.pid)
        assert len(workers) == 2, workers
        (folder,) = [str(p) for p in tmp_path.glob("maskgate-metrics-*")]

        def send(n: int) -> None:
            with httpx.Client(base_url=base, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as c:
                for _ in range(n):
                    assert c.post("/v1/predict", content=photo,
                                  headers={"content-type": "image/jpeg"}).status_code == 200

        threads = [threading.Thread(target=send, args=(6,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        per_worker = [own_counts(folder, pid) for pid in workers]
        assert sum(per_worker) == 24 and min(per_worker) > 0, per_worker  # both answered photos
        for _ in range(8):  # whichever worker answers the scrape
            m = _scrape(base)
            assert m[ok] == 24 and m[ready] == 1 and m[("maskgate_predictions_in_flight", ())] == 0, m
        os.kill(workers[0], signal.SIGKILL)
        end = time.time() + 60
        while time.time() < end:
            now = _children(srv.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.05)
        assert workers[0] not in _children(srv.pid)
        send(2)
        for _ in range(200):  # the replacement takes no connection before its model is loaded
            m = _scrape(base)
            if m[ready] == 1:
                break
            time.sleep(0.1)
        assert m[ok] == 26 and m[ready] == 1, m
    finally:
        srv.terminate()
        srv.wait(30)
    assert not list(tmp_path.glob("maskgate-metrics-*"))
