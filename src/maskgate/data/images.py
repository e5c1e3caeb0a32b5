"""Decode any photo a user may hand us into an RGB uint8 array, or fail with a clear error.

Handles EXIF orientation, grayscale, palette, RGBA/LA (composited on grey), CMYK, 16-bit and
float PNG/TIFF, truncated files and decompression bombs.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")  # what PIL may decode: read from the content, never the name
MAX_PIXELS = 64_000_000  # refuse images larger than this (decompression bombs)
_BACKGROUND = 128  # grey behind transparent pixels

# PIL warns on stderr about photos over Image.MAX_IMAGE_PIXELS (89 MP) as it opens them; our own limit (MAX_PIXELS,
# checked from the header) is lower, so each of those is refused with an ImageError naming the file, and PIL's
# warning would only be printed before it, once per photo, from a worker thread.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An input image cannot be used; the message names the file and the problem.

    `kind` says which problem, for callers that answer differently (the service's HTTP status):
    empty | too_large | too_small | not_image | corrupt | unreadable.
    """

    def __init__(self, source: str | os.PathLike, problem: str, kind: str = "corrupt"):
        self.source = str(source)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{self.source}: {problem}")


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[..., 0]
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "F" and arr.max() <= 1.0:
            hi = 1.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (_BACKGROUND,) * 3 + (255,))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX...


def decode_image(data: bytes, source: str | os.PathLike = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> HxWx3 uint8 RGB, upright (EXIF applied).

    The size is checked from the header before any pixel is decoded (decompression bombs).
    """
    if not data:
        raise ImageError(source, "empty file", "empty")
    Image.init()  # register every format plugin (once): `formats=` looks them up by name
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(source, f"image too large ({w}x{h} pixels; limit {max_pixels})", "too_large")
            if w < 8 or h < 8:
                raise ImageError(source, f"image too small ({w}x{h} pixels)", "too_small")
            img.load()  # raises on truncated data
            img = ImageOps.exif_transpose(img)
            arr = _to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(source, f"image too large: {e}", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg, kind = str(e) or type(e).__name__, "corrupt"
        if "truncated" in msg.lower():
            msg = "truncated image file (" + msg + ")"
        elif "cannot identify" in msg:
            msg, kind = f"not an image file (unreadable or not one of {', '.join(FORMATS)})", "not_image"
        raise ImageError(source, msg, kind) from None
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a file from disk -> HxWx3 uint8 RGB; ImageError naming the file on any problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})", "unreadable") from None
    return decode_image(data, path)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside / below a folder, sorted, by suffix."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
