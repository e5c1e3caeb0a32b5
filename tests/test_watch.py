"""`maskgate watch`: the tracker on hand-made boxes, and the whole loop on a video made from a shipped photo."""
import base64
import csv
import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from maskgate.watch.tracker import IoUTracker, Track, iou


def test_iou_hand_computed():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou(a, b), [[50 / 150, 0.0, 1.0]])
    assert iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_one_face_moving_is_one_track():
    tr = IoUTracker()
    ids = []
    for i in range(30):  # 4 px per frame, 60 px box
        (t,), ended = tr.update(i / 25, [[10 + 4 * i, 50, 70 + 4 * i, 110]])
        ids.append(t.id)
        assert ended == []
    assert set(ids) == {1} and tr.tracks[0].hits == 30


def test_two_people_crossing_paths_keep_their_ids():
    tr = IoUTracker()
    seen = {}
    for i in range(20):
        a, b = [0 + 10 * i, 0, 60 + 10 * i, 60], [400 - 10 * i, 200, 460 - 10 * i, 260]  # vertical gap: no overlap
        tracks, _ = tr.update(i / 25, [a, b] if i % 2 else [b, a])  # order of detections does not matter
        boxes = [a, b] if i % 2 else [b, a]
        for t, box in zip(tracks, boxes):
            seen.setdefault(t.id, set()).add("a" if box == a else "b")
    assert seen == {1: {"a"}, 2: {"b"}} or seen == {1: {"b"}, 2: {"a"}}


def test_skipped_frames_still_match_by_centre_and_a_gap_ends_the_track():
    tr = IoUTracker(max_gap_s=0.5)
    (t1,), _ = tr.update(0.0, [[0, 0, 50, 50]])
    (t2,), _ = tr.update(0.2, [[40, 0, 90, 50]])  # IoU 0.11: matched by centre distance (40 px < 1 box)
    assert t2.id == t1.id
    (t3,), _ = tr.update(0.4, [[300, 300, 350, 350]])  # far away: somebody else
    assert t3.id != t1.id
    (t4,), ended = tr.update(0.8, [[305, 300, 355, 350]])  # 0.6 s after the first was last seen
    assert [t.id for t in ended] == [t1.id] and t4.id == t3.id
    assert [t.id for t in tr.finish()] == [t3.id]


@pytest.fixture(scope="module")
def walk_video(tmp_path_factory):
    from maskgate.demo import make_walk_video

    return make_walk_video(tmp_path_factory.mktemp("video") / "walk.avi", seconds=3.0, fps=25, masked_until=0.5)


def test_watch_a_walk_past_one_track_right_events(walk_video, tmp_path):
    """The astronaut crosses the frame, masked for the first half: one person, two events (wear, then no mask)."""
    from maskgate.models.runtime import default_model_path
    from maskgate.predict import Predictor
    from maskgate.watch.loop import WatchOptions, watch

    events = tmp_path / "events.csv"
    out = tmp_path / "annotated.mp4"
    summary = watch(str(walk_video), Predictor(default_model_path("onnx"), workers=1),
                    WatchOptions(realtime=False), str(out), str(events), progress=False)
    assert summary["frames_read"] == 75 and summary["frames_classified"] == 75 and summary["frames_skipped"] == 0
    rows = list(csv.DictReader(open(events)))
    assert [r["mask"] for r in rows] == ["wear", "not_wear"]
    assert {r["track"] for r in rows} == {"1"} and summary["people"] == 1
    assert summary["people_by_worst_state"] == {"wear": 0, "incorrect": 0, "not_wear": 1}
    first, second = rows
    assert float(first["end_s"]) < 1.6 <= float(second["start_s"]) + 0.2  # the change is where the mask went
    assert int(first["frames"]) + int(second["frames"]) == 75
    assert all(float(r["mask_conf"]) > 0.6 and r["gender"] == "female" for r in rows)
    for r in rows:
        snap = cv2.imread(r["snapshot"])
        assert snap is not None and min(snap.shape[:2]) > 80
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 75 and cap.read()[0]


def test_watch_cli_realtime_reports_skips(walk_video, tmp_path):
    r = subprocess.run([sys.executable, "-m", "maskgate", "watch", "--source", str(walk_video),
                        "--events", str(tmp_path / "ev.csv"), "--model",
                        str(__import__("maskgate.models.runtime", fromlist=["x"]).default_model_path("onnx"))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["frames_read"] == 75
    assert summary["frames_classified"] + summary["frames_skipped"] == 75 and summary["frames_classified"] >= 10
    assert summary["kept_real_time"] is True and summary["people"] == 1


def test_watch_bad_sources_say_what_is_wrong(tmp_path):
    from maskgate.cli import main

    assert main(["watch", "--source", str(tmp_path / "missing.mp4")]) == 2
    bad = tmp_path / "notavideo.mp4"
    bad.write_bytes(b"hello")
    assert main(["watch", "--source", str(bad)]) == 2


def test_a_face_at_the_right_edge_keeps_its_whole_label():
    """The label of a face near the frame's right edge is moved left to fit, not cut off at the edge."""
    from maskgate.watch.loop import COLOURS, draw

    frame = np.zeros((240, 320, 3), np.uint8)
    track = Track(id=12, box=np.array([270.0, 100, 318, 160]), first_t=0.0, last_t=0.0)
    img = draw(frame, [(track, "incorrect", 0.97)])
    col = np.all(img == COLOURS["incorrect"], axis=-1)
    band = np.flatnonzero(col.sum(1) > 60)  # the label's filled band (wider than the 48 px box)
    assert band.size
    text_cols = np.flatnonzero((img[band].min(-1) > 200).any(0))  # white text on the band
    assert text_cols.size and text_cols.max() < 320 - 2 and text_cols.min() < 270  # moved left, all inside


class _DroppingCamera:
    """A network camera on 127.0.0.1 (MJPEG over HTTP, as many IP cameras send): each connection gets the
    next part of a video's frames at 25 fps and is then dropped; the second connection is answered only
    after `pause` seconds; once the parts are used up every connection is refused with 404."""

    def __init__(self, video, parts: int = 2, pause: float = 1.6):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        cap = cv2.VideoCapture(str(video))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.imencode(".jpg", f)[1].tobytes())
        n = len(frames) // parts
        chunks = [frames[i * n:(i + 1) * n] for i in range(parts)]
        served = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                k = len(served)
                served.append(k)
                if k >= len(chunks):
                    self.send_error(404)
                    return
                if k:
                    time.sleep(pause)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for jpg in chunks[k]:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpg) + jpg + b"\r\n")
                        time.sleep(0.04)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.served = served
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_stream_that_drops_is_reopened_and_its_people_still_counted(walk_video, tmp_path):
    """A real stream (OpenCV's FFmpeg reading MJPEG over HTTP) drops after the masked half of the walk and
    comes back 1.6 s later with the unmasked half: the watcher reopens it, the person seen before and after
    the gap (longer than --max-gap) is two tracks, one event each; when the camera is gone for good
    (404), it stops after --reconnect seconds. With --reconnect 0 the first drop ends the watch."""
    from maskgate.models.runtime import default_model_path
    from maskgate.predict import Predictor
    from maskgate.watch.loop import WatchOptions, watch

    pred = Predictor(default_model_path("onnx"), workers=1)
    cam = _DroppingCamera(walk_video)
    try:
        events = tmp_path / "events.csv"
        s = watch(cam.url, pred, WatchOptions(reconnect_s=1.0, max_seconds=60), None, str(events), progress=False)
    finally:
        cam.close()
    assert s["live"] and s["reconnects"] == 1 and len(cam.served) >= 3  # two parts, then refused until it gave up
    assert 1.5 <= s["seconds_without_frames"] < 5.0
    rows = list(csv.DictReader(open(events)))
    assert [(r["track"], r["mask"]) for r in rows] == [("1", "wear"), ("2", "not_wear")]
    assert s["people"] == 2 and s["frames_read"] >= 40
    assert s["wall_seconds"] < 20  # it stopped once the camera was gone for good

    cam = _DroppingCamera(walk_video)
    try:
        s = watch(cam.url, pred, WatchOptions(reconnect_s=0, max_seconds=60), None, None, progress=False)
    finally:
        cam.close()
    assert s["reconnects"] == 0 and len(cam.served) == 1 and s["people"] == 1


def test_events_are_posted_as_json_and_a_dead_receiver_costs_only_its_events(walk_video, tmp_path):
    """`--post URL`: each event, as in events.csv, arrives as a JSON POST; a receiver that answers 500 or is
    not there at all does not stop the watch, and the summary says how many events it did not get."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got, status = [], {"code": 200}

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if status["code"] == 200:
                got.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/events"
    model = str(__import__("maskgate.models.runtime", fromlist=["x"]).default_model_path("onnx"))
    try:
        r = subprocess.run([sys.executable, "-m", "maskgate", "watch", "--source", str(walk_video), "--all-frames",
                            "--events", str(tmp_path / "ev.csv"), "--post", url, "--post-snapshot", "--model", model],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout[r.stdout.index("{"):])
        rows = list(csv.DictReader(open(tmp_path / "ev.csv")))
        assert [ct for ct, _ in got] == ["application/json"] * 4 and len(rows) == 2
        # each state is announced as soon as it holds (an alarm while the person is still there), then closed
        assert [(b["kind"], b["mask"]) for _, b in got] == [("started", "wear"), ("closed", "wear"),
                                                           ("started", "not_wear"), ("closed", "not_wear")]
        started, closed = [b for _, b in got if b["kind"] == "started"], [b for _, b in got if b["kind"] == "closed"]
        for ev, row in zip(closed, rows):
            assert ev["source"] == str(walk_video)
            # events.csv's rows, and the snapshot file's very bytes (`--post-snapshot`)
            assert {k: str(v) for k, v in ev.items() if k not in ("source", "kind", "snapshot_jpeg")} == row
            assert base64.b64decode(ev["snapshot_jpeg"]) == open(row["snapshot"], "rb").read()
        for ev in started:  # the face so far, a real picture of a face-sized crop
            face = cv2.imdecode(np.frombuffer(base64.b64decode(ev["snapshot_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
            assert face is not None and min(face.shape[:2]) >= 20
        for s, c in zip(started, closed):
            assert (s["track"], s["start_s"]) == (c["track"], c["start_s"]) and s["end_s"] < c["end_s"]
        assert started[1]["end_s"] < 2.0 < closed[1]["end_s"]  # the unmasked face announced long before it left
        assert summary["posted"] == {"url": url, "sent": 4, "not_delivered": 0}

        from maskgate.watch.notify import EventPoster

        status["code"] = 500  # the receiver fails: tried 3 times, then counted
        p = EventPoster(url, tries=3)
        p.post({"event": 1})
        assert p.close() == {"url": url, "sent": 0, "not_delivered": 1}
    finally:
        srv.shutdown()
        srv.server_close()
    # nobody listening at all: the watch still ends normally, with the same events on disk
    r = subprocess.run([sys.executable, "-m", "maskgate", "watch", "--source", str(walk_video), "--all-frames",
                        "--events", str(tmp_path / "ev2.csv"), "--post", url, "--model", model],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["posted"]["not_delivered"] == 4 and summary["posted"]["sent"] == 0
    assert len(list(csv.DictReader(open(tmp_path / "ev2.csv")))) == 2 and "not delivered" in r.stderr
    from maskgate.cli import main

    assert main(["watch", "--source", str(walk_video), "--post", "ftp://x"]) == 2
    assert main(["watch", "--source", str(walk_video), "--post-snapshot"]) == 2  # nothing to send it with


def test_a_zone_and_a_minimum_face_size_say_who_counts(walk_video, tmp_path):
    """The astronaut crosses left to right, masked in the first half of the video: with the right half of the
    frame as the zone only the unmasked part is seen, with the left half only the masked part; a face smaller
    than --min-face is never counted. The annotated video draws the zone and the faces left out, in grey."""
    from maskgate.models.runtime import default_model_path
    from maskgate.predict import Predictor
    from maskgate.watch.loop import GREY, WatchOptions, watch

    pred = Predictor(default_model_path("onnx"), workers=1)
    right = watch(str(walk_video), pred, WatchOptions(realtime=False, zone=(0.5, 0, 1, 1)), str(tmp_path / "r.mp4"),
                  str(tmp_path / "r.csv"), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    # the face's centre passes x = 320 at frame 37 of 75 (1.48 s); the mask comes off at frame 38
    assert [r["mask"] for r in rows] == ["not_wear"] and float(rows[0]["start_s"]) >= 1.4
    assert right["faces_not_counted"] >= 30 and right["people"] == 1
    left = watch(str(walk_video), pred, WatchOptions(realtime=False, zone=(0, 0, 0.5, 1)), None,
                 str(tmp_path / "l.csv"), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert [r["mask"] for r in rows] == ["wear"] and float(rows[0]["end_s"]) <= 1.6
    assert left["faces_not_counted"] >= 30
    small = watch(str(walk_video), pred, WatchOptions(realtime=False, min_face=400), None, None, progress=False)
    assert small["events"] == 0 and small["frames_classified"] == 75 and small["faces_not_counted"] >= 70

    def frame10(path):  # frame 10 (RGB): the face is left of the zone
        cap = cv2.VideoCapture(str(path))
        for _ in range(11):
            ok, frame = cap.read()
        cap.release()
        assert ok
        return frame[..., ::-1]

    src, ann = frame10(walk_video), frame10(tmp_path / "r.mp4")
    x1, y1, x2, y2 = (int(round(v)) for v in pred.predict_image(src, all_faces=True)[0].box)
    assert x2 < 320  # left of the zone
    edges = np.concatenate([ann[y1, x1:x2], ann[y2, x1:x2], ann[y1:y2, x1], ann[y1:y2, x2]]).astype(int)
    src_edges = np.concatenate([src[y1, x1:x2], src[y2, x1:x2], src[y1:y2, x1], src[y1:y2, x2]]).astype(int)
    grey = lambda px: np.mean(np.all(np.abs(px - GREY) < 40, axis=-1))  # noqa: E731
    assert grey(edges) > 0.5 > grey(src_edges) + 0.2  # the left-out face's thin grey outline

    from maskgate.cli import main

    for bad in (["--zone", "0.5,0,0.4,1"], ["--zone", "a,b"], ["--zone", "0,0,1"], ["--min-face", "-1"]):
        assert main(["watch", "--source", str(walk_video), *bad]) == 2


def test_several_sources_at_once_each_with_its_own_events(walk_video, tmp_path):
    """`--source a=... --source b=...`: one model, one thread per source, each source's events in its own
    csv (the same as watching it alone), named in the summary; a source that cannot be opened ends only its
    own watch; names must differ."""
    import shutil

    other = tmp_path / "walk2.avi"
    shutil.copy(walk_video, other)
    model = str(__import__("maskgate.models.runtime", fromlist=["x"]).default_model_path("onnx"))
    r = subprocess.run([sys.executable, "-m", "maskgate", "watch", "--source", f"door1={walk_video}",
                        "--source", f"door2={other}", "--source", f"back={tmp_path / 'missing.avi'}",
                        "--all-frames", "--events", str(tmp_path / "ev.csv"), "--model", model],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout[r.stdout.index('{\n  "sources"'):])
    assert list(summary["sources"]) == ["door1", "door2", "back"] and summary["errors"] == 1
    assert "missing.avi" in summary["sources"]["back"]["error"] and "[back]" in r.stderr
    for name in ("door1", "door2"):
        s = summary["sources"][name]
        assert s["source"] == name and s["frames_classified"] == 75 and s["people"] == 1
        rows = list(csv.DictReader(open(tmp_path / f"ev_{name}.csv")))
        assert [row["mask"] for row in rows] == ["wear", "not_wear"]
        assert all(f"ev_{name}_snapshots" in row["snapshot"] for row in rows)
    assert summary["events"] == 4 and summary["people"] == 2
    assert f"[door2] event 2: track 1 not_wear" in r.stdout

    from maskgate.cli import main

    assert main(["watch", "--source", f"a={walk_video}", "--source", f"a={other}"]) == 2  # names must differ


def test_a_stream_password_is_not_shown_posted_or_logged():
    from maskgate.watch.loop import public_name, split_source

    assert public_name("rtsp://admin:s3cret@10.0.0.5:554/stream1") == "rtsp://***@10.0.0.5:554/stream1"
    assert public_name("http://cam.local/video.mjpg") == "http://cam.local/video.mjpg"
    assert public_name("0") == "0" and public_name("door.mp4") == "door.mp4"
    assert split_source("door1=rtsp://u:p@cam/1") == ("door1", "rtsp://u:p@cam/1")
    assert split_source("rtsp://cam/stream?channel=1") == (None, "rtsp://cam/stream?channel=1")
    assert split_source("0") == (None, "0")
