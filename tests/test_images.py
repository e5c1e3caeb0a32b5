"""Decoding of awkward inputs: EXIF orientation, grayscale, RGBA, CMYK, 16-bit, truncated, not-an-image."""
import io

import numpy as np
import pytest
from PIL import Image

from maskgate.data.images import ImageError, decode_image, read_image


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_applied():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(_bytes(img, "JPEG", exif=exif, quality=95))
    assert out.shape == (80, 40, 3)
    assert out[:40].mean() > 200 and out[40:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_modes_become_rgb(mode):
    img = Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image(_bytes(img, fmt))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert abs(int(out.mean()) - 200) < 12


def test_rgba_transparent_pixels_composited_on_grey():
    arr = np.zeros((16, 16, 4), np.uint8)
    out = decode_image(_bytes(Image.fromarray(arr, "RGBA"), "PNG"))
    assert (out == 128).all()


def test_16bit_png_scaled_to_8bit():
    arr = np.full((20, 20), 65535, np.uint16)
    arr[:10] = 0
    out = decode_image(_bytes(Image.fromarray(arr), "PNG"))
    assert out.shape == (20, 20, 3)
    assert out[:10].max() == 0 and out[10:].min() == 255


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    data = _bytes(Image.fromarray(np.random.randint(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg.*truncated"):
        read_image(p)


def test_not_an_image_and_empty(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        read_image(p)
    e = tmp_path / "empty.png"
    e.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        read_image(e)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.jpg")


def test_photo_over_pils_warning_size_is_refused_without_pils_warning(tmp_path):
    """A 100 MP photo (over PIL's 89 MP warning size, under its error size): our one clear error names the file,
    and PIL's DecompressionBombWarning is not printed before it (run as a user would, in a fresh process)."""
    import struct
    import subprocess
    import sys
    import zlib

    side = 10_000
    raw = zlib.compress(b"".join(b"\x00" + bytes(side) for _ in range(side)), 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    code = ("import sys\nfrom maskgate.data.images import ImageError, read_image\n"
            "try:\n    read_image(sys.argv[1])\nexcept ImageError as e:\n    print(e.kind, e)\n")
    r = subprocess.run([sys.executable, "-W", "default", "-c", code, str(big)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("too_large ") and str(big) in r.stdout and "10000x10000" in r.stdout
    assert "DecompressionBombWarning" not in r.stderr, r.stderr


def test_a_jpeg_over_the_pixel_limit_is_decoded_smaller_and_a_png_refused():
    """A phone's 108 MP JPEG is classified, decoded at 1/2, 1/4 or 1/8 of its size; a PNG that large is refused."""
    arr = np.zeros((400, 640, 3), np.uint8)
    arr[:, :320] = (220, 40, 40)  # left half red
    jpg = _bytes(Image.fromarray(arr), "JPEG", quality=95)
    assert decode_image(jpg, "a.jpg", max_pixels=400 * 640).shape == (400, 640, 3)  # at the limit: as it is
    half = decode_image(jpg, "a.jpg", max_pixels=400 * 640 - 1)
    assert half.shape == (200, 320, 3)
    assert half[:, :150].mean(axis=(0, 1))[0] > 180 and half[:, 170:].mean() < 30  # the picture, not noise
    assert decode_image(jpg, "a.jpg", max_pixels=200 * 320 - 1).shape == (100, 160, 3)  # the largest cut that fits
    with pytest.raises(ImageError, match=r"a\.jpg: image too large \(640x400 pixels; limit 999; a JPEG is decoded"):
        decode_image(jpg, "a.jpg", max_pixels=999)  # 1/8 is 80x50 = 4000 pixels
    with pytest.raises(ImageError, match=r"a\.png: image too large \(640x400 pixels; limit 1000\)$") as e:
        decode_image(_bytes(Image.fromarray(arr), "PNG"), "a.png", max_pixels=1000)
    assert e.value.kind == "too_large"


def test_a_real_70_megapixel_jpeg_is_read_at_half_size(tmp_path):
    """Through read_image with the default limit (64 MP), as predict reads a phone photo; EXIF rotation kept."""
    img = Image.new("RGB", (10_240, 6_880), (90, 120, 200))  # 70.5 MP
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = tmp_path / "phone.jpg"
    img.save(p, "JPEG", quality=80, exif=exif)
    del img
    out = read_image(p)
    assert out.shape == (5_120, 3_440, 3)  # upright and halved
    assert abs(int(out[100, 100, 2]) - 200) < 8


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_heic_and_avif_are_read(fmt, astronaut):
    """A phone's HEIC photo (pillow-heif) and AVIF (Pillow's own) decode to the picture, found by content."""
    data = _bytes(Image.fromarray(astronaut), fmt, quality=90)
    out = decode_image(data, "photo.bin")  # the name says nothing: the bytes decide
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - astronaut).mean() < 6


def test_a_folder_of_heic_photos_is_predicted(tmp_path, astronaut):
    """`maskgate predict FOLDER` picks up .heic files and classifies them like JPEGs of the same photo."""
    from maskgate.cli import main

    folder = tmp_path / "phone"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "IMG_0001.HEIC", "HEIF", quality=90)
    Image.fromarray(astronaut).save(folder / "IMG_0002.jpg", "JPEG", quality=95)
    out = tmp_path / "p.csv"
    assert main(["predict", str(folder), "--out", str(out), "--main-face"]) == 0
    import pandas as pd

    rows = pd.read_csv(out)
    assert sorted(rows["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["IMG_0001.HEIC", "IMG_0002.jpg"]
    assert rows["face_found"].all() and rows["class"].nunique() == 1
