"""Decode any photo a user may hand us into an RGB uint8 array, or fail with a clear error.

Handles EXIF orientation, grayscale, palette, RGBA/LA (composited on grey), CMYK, 16-bit and
float PNG/TIFF, truncated files and decompression bombs.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 64_000_000  # refuse images larger than this (decompression bombs)
_BACKGROUND = 128  # grey behind transparent pixels


class ImageError(ValueError):
    """An input image cannot be used; the message names the file and the problem."""

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = str(source)
        self.problem = problem
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


def decode_image(data: bytes, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Bytes of an image file -> HxWx3 uint8 RGB, upright (EXIF applied)."""
    if not data:
        raise ImageError(source, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(source, f"image too large ({w}x{h} pixels; limit {MAX_PIXELS})")
            if w < 8 or h < 8:
                raise ImageError(source, f"image too small ({w}x{h} pixels)")
            img.load()  # raises on truncated data
            img = ImageOps.exif_transpose(img)
            arr = _to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(source, f"image too large: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            msg = "truncated image file (" + msg + ")"
        elif "cannot identify" in msg:
            msg = "not an image file (unreadable or unknown format)"
        raise ImageError(source, msg) from None
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a file from disk -> HxWx3 uint8 RGB; ImageError naming the file on any problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from None
    return decode_image(data, path)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside / below a folder, sorted, by suffix."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
