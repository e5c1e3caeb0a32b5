"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright, against the
service on a real port. An uploaded photo gets its boxes and banner; the camera path runs on Chromium's
fake camera fed with a video this test makes. Screenshots go to test-artifacts/ (beside tests/)."""
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it: "
                                                          "apt-get install chromium)")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from maskgate.models.runtime import default_model_path
    from maskgate.predict import Predictor
    from maskgate.serve.app import create_app

    port = _free_port()
    app = create_app(predictor=Predictor(default_model_path("onnx"), workers=1))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


def _masked_frame(astronaut, face) -> np.ndarray:
    """640 x 480 RGB: the astronaut's head with a drawn surgical mask, in the middle."""
    from maskgate.synth.masks import MaskStyle, draw_mask

    masked, _ = draw_mask(astronaut, face.landmarks, "worn", np.random.default_rng(0), MaskStyle(shape="surgical"))
    x1, y1, x2, y2 = face.box
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.8
    head = masked[int(cy - s / 2):int(cy + s / 2), int(cx - s / 2):int(cx + s / 2)]
    head = cv2.resize(np.ascontiguousarray(head), (240, 240), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 110, np.uint8)
    frame[120:360, 200:440] = head
    return frame


def _write_y4m(path: Path, frame_rgb: np.ndarray, n: int = 10, fps: int = 10) -> Path:
    """The raw video format Chromium's fake camera reads (--use-file-for-fake-video-capture)."""
    h, w = frame_rgb.shape[:2]
    yuv = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2YUV_I420).tobytes()  # Y, then U, then V (4:2:0)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(n):
            f.write(b"FRAME\n" + yuv)
    return path


def _browser(p, extra: list[str] = ()):
    return p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + list(extra), headless=True)


def test_upload_a_photo_gets_boxes_and_a_banner(server, astronaut, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 412, "height": 915})  # a phone's screen
        page.goto(server + "/")
        page.set_input_files("#file", str(photo))
        page.wait_for_function("window.maskgate.results >= 1", timeout=30_000)
        last = page.evaluate("window.maskgate.last")
        assert len(last["faces"]) == 1 and last["faces"][0]["mask"]["label"] == "not_wear"
        assert page.get_attribute("#banner", "data-state") == "no_mask"
        assert "No mask" in page.inner_text("#banner")
        assert page.locator("#faces li").count() == 1
        # the box was drawn: the canvas has the red box colour where the face's top edge is
        x1, y1, x2, _ = last["faces"][0]["box"]
        px = page.evaluate(f"Array.from(document.getElementById('view').getContext('2d')"
                           f".getImageData({int((x1 + x2) / 2)}, {int(y1)}, 1, 1).data)")
        assert px[0] > 180 and px[1] < 90, px  # #d93025
        page.screenshot(path=str(ARTIFACTS / "browser_upload.png"), full_page=True)
        browser.close()


def test_camera_path_on_a_fake_camera(server, astronaut, astronaut_face, tmp_path):
    from playwright.sync_api import sync_playwright

    video = _write_y4m(tmp_path / "camera.y4m", _masked_frame(astronaut, astronaut_face))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p, [f"--use-file-for-fake-video-capture={video}"])
        context = browser.new_context(permissions=["camera"])
        page = context.new_page()
        page.goto(server + "/")
        assert not page.is_visible("#stop")
        page.click("#camera")
        page.wait_for_selector("#stop", state="visible")
        assert not page.is_visible("#camera")
        page.wait_for_function("window.maskgate.results >= 2", timeout=60_000)  # live: request after request
        last = page.evaluate("window.maskgate.last")
        assert last["image"] == {"width": 640, "height": 480}
        assert len(last["faces"]) == 1 and last["faces"][0]["mask"]["label"] == "wear"
        assert page.get_attribute("#banner", "data-state") == "ok"
        assert page.evaluate("window.maskgate.frames") > 2
        page.screenshot(path=str(ARTIFACTS / "browser_camera.png"), full_page=True)
        page.click("#stop")
        assert page.is_visible("#camera") and not page.is_visible("#stop")
        browser.close()
