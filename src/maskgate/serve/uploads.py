"""An uploaded photo -> RGB array, or an HTTP error that says what was wrong with it.

The type comes from the bytes (PIL reads the header), never from the file name or the declared
content type; the pixel count is checked from the header before anything is decoded.
"""
from __future__ import annotations

import numpy as np

from ..data.images import ImageError, decode_image_sized

# ImageError.kind -> HTTP status
STATUS = {"empty": 400, "too_large": 413, "not_image": 415, "too_small": 422, "corrupt": 422, "unreadable": 422}


class UploadError(Exception):
    """A request the service refuses: HTTP status, a short machine-readable kind, a message for people."""

    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def decode_upload(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo's RGB array and its own (height, width) (larger when a big JPEG was decoded smaller)."""
    try:
        return decode_image_sized(data, name, max_pixels=max_pixels)
    except ImageError as e:
        raise UploadError(STATUS.get(e.kind, 422), e.kind, str(e)) from None
