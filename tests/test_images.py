"""Image decoding / RGB conversion of `mmfinereason.data.io.images` (tiny PIL-drawn images, no I/O beyond tmp)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mmfinereason.data.io.images import BadImageError, convert_to_rgb, rgb_image_bytes, to_rgb_image


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_rgb(size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.effect_noise(size, 60).convert("RGB")


@pytest.mark.parametrize(
    ("mode", "fmt", "color"),
    [("CMYK", "JPEG", (0, 0, 0, 0)), ("L", "PNG", 128), ("1", "PNG", 1), ("P", "PNG", 3), ("I;16", "PNG", 1000)],
)
def test_modes_become_rgb(mode: str, fmt: str, color: object) -> None:
    data = encode(Image.new(mode, (6, 5), color), fmt)
    assert Image.open(io.BytesIO(data)).mode == mode  # the file really is in that mode
    image = to_rgb_image(data)
    assert image.mode == "RGB" and image.size == (6, 5)
    stored, converted_from = rgb_image_bytes(data)
    assert converted_from == mode
    assert Image.open(io.BytesIO(stored)).mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_are_composited_on_white(mode: str) -> None:
    transparent = Image.new(mode, (4, 4), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    assert to_rgb_image(encode(transparent)).getpixel((0, 0)) == (255, 255, 255)  # not black


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    assert to_rgb_image(encode(image)).getpixel((1, 1)) == (255, 255, 255)


def test_high_bit_depth_is_rescaled_not_clipped() -> None:
    sixteen = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert [to_rgb_image(sixteen).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
    floats = Image.fromarray(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32))
    assert [to_rgb_image(floats).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_rgb_file_keeps_its_bytes() -> None:
    data = encode(noisy_rgb(), "JPEG")
    assert rgb_image_bytes(data) == (data, None)
    assert rgb_image_bytes({"bytes": data, "path": "ignored.jpg"}) == (data, None)


def test_accepted_value_kinds(tmp_path) -> None:
    data = encode(Image.new("RGB", (3, 2), (10, 20, 30)))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(data)
    values = [
        data,
        bytearray(data),
        {"bytes": data, "path": None},
        {"bytes": None, "path": "sub/a.png"},
        "sub/a.png",
        tmp_path / "sub" / "a.png",
        "data:image/png;base64," + base64.b64encode(data).decode(),
        Image.open(io.BytesIO(data)),
    ]
    for value in values:
        image = to_rgb_image(value, base_dir=tmp_path)
        assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (3, 2), (10, 20, 30)), value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "zero_size_image"),
        (Image.new("RGB", (0, 4)), "zero_size_image"),
        (b"this is not an image at all", "undecodable_image"),
        ({"bytes": None, "path": None}, "missing_image"),
        (None, "missing_image"),
        ("does/not/exist.png", "missing_image_file"),
        (12345, "undecodable_image"),
    ],
)
def test_bad_values_raise_with_reason(value: object, reason: str) -> None:
    with pytest.raises(BadImageError) as info:
        to_rgb_image(value)
    assert info.value.reason == reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_fails_at_load_time(fmt: str) -> None:
    data = encode(noisy_rgb(), fmt)
    with pytest.raises(BadImageError) as info:
        to_rgb_image(data[: len(data) // 2])
    assert info.value.reason == "truncated_image"


def test_empty_file_is_zero_size(tmp_path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadImageError, match="zero_size_image"):
        to_rgb_image("empty.png", base_dir=tmp_path)


def test_exif_rotation_is_applied() -> None:
    image = Image.new("RGB", (6, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert to_rgb_image(buffer.getvalue()).size == (2, 6)
    assert convert_to_rgb(Image.new("RGB", (6, 2))).size == (6, 2)
