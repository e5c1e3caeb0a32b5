"""Crops cached on disk, keyed by the image file's content and the crop settings.

Layout: <root>/<settings key>/<sha[:2]>/<sha>.png (lossless crop) + <sha>.json (detection result).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.images import ImageError, decode_image
from .crop import CropSettings, FaceCrop, FaceCropper


def default_cache_root() -> Path:
    return Path(os.environ.get("MASKGATE_CACHE", Path.home() / ".cache" / "maskgate"))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class CropCache:
    def __init__(self, root: str | os.PathLike, settings: CropSettings):
        self.settings = settings
        self.dir = Path(root) / "crops" / settings.key()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cropper: FaceCropper | None = None

    @property
    def cropper(self) -> FaceCropper:
        if self._cropper is None:
            self._cropper = FaceCropper(self.settings, threads=1)  # images run side by side in threads
        return self._cropper

    def _paths(self, digest: str) -> tuple[Path, Path]:
        d = self.dir / digest[:2]
        return d / f"{digest}.png", d / f"{digest}.json"

    def get(self, path: str | os.PathLike) -> tuple[FaceCrop, str]:
        """The main-face crop of one image file (from cache, or computed and stored). Returns (crop, key)."""
        data = Path(path).read_bytes()
        digest = hashlib.sha1(data).hexdigest()
        png, meta = self._paths(digest)
        if png.is_file() and meta.is_file():
            img = cv2.imread(str(png), cv2.IMREAD_COLOR)
            if img is not None:
                m = json.loads(meta.read_text())
                return FaceCrop(img[..., ::-1].copy(), m["found"], m["score"], np.asarray(m["box"], np.float32),
                                np.asarray(m["landmarks"], np.float32)), digest
        crop = self.cropper.main_face(decode_image(data, path))
        png.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", crop.image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        _atomic_write(png, buf.tobytes())
        _atomic_write(meta, json.dumps({"found": crop.found, "score": crop.score, "box": crop.box.tolist(),
                                        "landmarks": crop.landmarks.tolist()}).encode())
        return crop, digest

    def crop_all(self, paths: list[str], workers: int = 2, desc: str = "face crops"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
        """Crops for many files -> (N x S x S x 3 uint8, found flags, N x 5 x 2 landmarks, keys, problems)."""
        s = self.settings.crop_size
        out = np.zeros((len(paths), s, s, 3), np.uint8)
        found = np.zeros(len(paths), bool)
        landmarks = np.zeros((len(paths), 5, 2), np.float32)
        keys = [""] * len(paths)
        problems: list[str] = []

        def one(i: int):
            try:
                crop, key = self.get(paths[i])
            except ImageError as e:
                return i, None, str(e)
            except OSError as e:
                return i, None, f"{paths[i]}: cannot read file ({e})"
            return i, (crop, key), None

        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            for i, res, err in tqdm(ex.map(one, range(len(paths))), total=len(paths), desc=desc,
                                    unit="img", mininterval=2, disable=False):
                if err:
                    problems.append(err)
                    continue
                out[i], found[i], landmarks[i], keys[i] = res[0].image, res[0].found, res[0].landmarks, res[1]
        return out, found, landmarks, keys, problems
