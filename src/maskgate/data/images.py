"""Decode any photo a user may hand us into an RGB uint8 array, or fail with a clear error.

Handles EXIF orientation, grayscale, palette, RGBA/LA (composited on grey), CMYK, 16-bit and
float PNG/TIFF, truncated files and decompression bombs.
"""
from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif")
# what PIL may decode: read from the content, never the name. HEIF (a phone's HEIC photos) through pillow-heif's
# plugin, AVIF through Pillow's own; a format whose plugin is missing is simply not accepted (`_formats`).
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "HEIF", "AVIF")
MAX_PIXELS = 64_000_000  # larger photos: a JPEG is decoded smaller, anything else refused (decompression bombs)
_BACKGROUND = 128  # grey behind transparent pixels

# PIL warns on stderr about photos over Image.MAX_IMAGE_PIXELS (89 MP) as it opens them; our own limit (MAX_PIXELS,
# checked from the header) is lower, so each of those is decoded smaller (a JPEG) or refused with an ImageError
# naming the file, and PIL's warning would only be printed too, once per photo, from a worker thread.
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


@functools.cache
def _formats() -> tuple[str, ...]:
    """FORMATS that this install can open: every Pillow plugin registered once, and pillow-heif's where installed."""
    Image.init()
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # an install without it reads everything but HEIC
        pass
    return tuple(f for f in FORMATS if f in Image.OPEN)


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


def _shrink_on_decode(img: Image.Image, source: str | os.PathLike, max_pixels: int) -> None:
    """A JPEG over `max_pixels` (a 108 MP phone photo) is decoded at 1/2, 1/4 or 1/8 of its size, the largest
    that fits: the JPEG decoder does that for free, and no face needs the full size. Anything else over the
    limit is refused (decompression bombs are usually PNG), as is a JPEG over PIL's own refusal size (179 MP)."""
    w, h = img.size
    if img.format == "JPEG":
        s = next((s for s in (2, 4, 8) if -(-w // s) * -(-h // s) <= max_pixels), None)
        if s is not None:
            img.draft(None, (w // s, h // s))
            if img.size[0] * img.size[1] <= max_pixels:
                return
    raise ImageError(source, f"image too large ({w}x{h} pixels; limit {max_pixels}"
                     + ("; a JPEG is decoded at down to 1/8 of its size" if img.format == "JPEG" else "") + ")",
                     "too_large")


def decode_image_sized(data: bytes, source: str | os.PathLike = "<bytes>", max_pixels: int = MAX_PIXELS
                       ) -> tuple[np.ndarray, tuple[int, int]]:
    """Bytes of an image file -> (HxWx3 uint8 RGB, upright (EXIF applied); the photo's own (height, width), upright).

    The size is checked from the header before any pixel is decoded (decompression bombs); a JPEG over
    `max_pixels` is decoded smaller (`_shrink_on_decode`), so its array is smaller than the photo: boxes found
    on it are scaled to the photo's own pixels by whoever reports them (`predict.rescale_boxes`).
    """
    if not data:
        raise ImageError(source, "empty file", "empty")
    formats = _formats()
    try:
        with Image.open(io.BytesIO(data), formats=formats) as img:
            w, h = img.size
            if w * h > max_pixels:
                _shrink_on_decode(img, source, max_pixels)
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
            msg, kind = f"not an image file (unreadable or not one of {', '.join(formats)})", "not_image"
        raise ImageError(source, msg, kind) from None
    upright = (h, w) if (arr.shape[0] >= arr.shape[1]) == (h >= w) else (w, h)  # EXIF may have turned it
    return np.ascontiguousarray(arr), upright


def decode_image(data: bytes, source: str | os.PathLike = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> HxWx3 uint8 RGB, upright (EXIF applied); see `decode_image_sized`."""
    return decode_image_sized(data, source, max_pixels)[0]


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})", "unreadable") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a file from disk -> HxWx3 uint8 RGB; ImageError naming the file on any problem."""
    return decode_image(_read_bytes(path), path)


def read_image_sized(path: str | os.PathLike) -> tuple[np.ndarray, tuple[int, int]]:
    """`read_image` and the photo's own (height, width): see `decode_image_sized`."""
    return decode_image_sized(_read_bytes(path), path)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside / below a folder, sorted, by suffix."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
