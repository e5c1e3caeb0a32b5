"""Events sent on as they close: `maskgate watch --post URL` POSTs each one as JSON (a door controller, an
alarm, a chat bridge, a log collector on the site's network).

Sending never holds up the watch loop: events wait in a bounded queue and one thread posts them, each with a
timeout and a few tries with growing pauses. A receiver that is down or slow costs only its events: they are
counted as undelivered (and still in events.csv), the watch goes on. Standard library only (the slim install).
"""
from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Callable


class EventPoster:
    """POST JSON bodies to one URL from a background thread; `close()` waits (bounded) for the queue to empty."""

    def __init__(self, url: str, timeout: float = 5.0, tries: int = 3, max_queue: int = 1000,
                 log: Callable[[str], None] | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--post {url}: give an http:// or https:// URL")
        self.url, self.timeout, self.tries, self.log = url, timeout, max(1, tries), log or (lambda m: None)
        self.sent = self.failed = self.dropped = 0
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, daemon=True, name="maskgate-post")
        self._thread.start()

    def post(self, body: dict) -> None:
        """Queue one event; if the queue is full (the receiver has been down a long time) it is dropped, counted."""
        try:
            self._q.put_nowait(body)
        except queue.Full:
            self.dropped += 1

    def _send(self, body: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "maskgate-watch"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            r.read()

    def _run(self) -> None:
        while True:
            body = self._q.get()
            if body is None:
                return
            pause = 0.5
            for k in range(self.tries):
                try:
                    self._send(body)
                    self.sent += 1
                    break
                except (urllib.error.URLError, OSError, ValueError) as e:  # HTTPError (4xx/5xx) is a URLError
                    if k + 1 == self.tries:
                        self.failed += 1
                        self.log(f"event {body.get('event')} not delivered to {self.url}: {e}")
                    else:
                        time.sleep(pause)
                        pause *= 2

    def close(self, wait_s: float = 10.0) -> dict:
        """Stop after the queued events (at most `wait_s` seconds more); returns the counts."""
        try:
            self._q.put(None, timeout=wait_s)
        except queue.Full:
            pass
        self._thread.join(wait_s)
        undelivered = self.failed + self.dropped
        if self._thread.is_alive():  # a receiver too slow to empty the queue in time: what is left is lost
            undelivered += self._q.qsize()  # (the stop mark among them stands for the event in flight)
        return {"url": self.url, "sent": self.sent, "not_delivered": undelivered}
