"""Decode, validate and convert the images of a data row to RGB.

Why by hand: `datasets.Image()` decodes lazily, so a truncated JPEG in a 1.8M-row set only fails when the
collator touches it, hours into a run, and its `mode="RGB"` conversion is a plain `PIL.Image.convert`, which
turns transparent pixels black and clips 16-bit images to white. Here every image is fully decoded once, up
front (`img.load()`), failures raise `BadImageError` with a reason code that the loader counts, and the odd
modes are converted the way a viewer would show them (alpha composited on white, high bit depths rescaled).
`ImageFile.LOAD_TRUNCATED_IMAGES` is deliberately left alone: silently padding a half image with grey is a
wrong training example, not a fix.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

ImageValue = Any  # PIL image | bytes | {"bytes", "path"} dict | path str / PathLike | "data:image/...;base64," str

# Reason codes, also the keys of the loader's skip report.
MISSING_IMAGE = "missing_image"
MISSING_IMAGE_FILE = "missing_image_file"
ZERO_SIZE_IMAGE = "zero_size_image"
TRUNCATED_IMAGE = "truncated_image"
UNDECODABLE_IMAGE = "undecodable_image"
IMAGE_TOO_LARGE = "image_too_large"

_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class BadImageError(ValueError):
    """An image that cannot be used; `reason` is one of the reason codes above (the loader counts by it)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def to_rgb_image(value: ImageValue, base_dir: str | os.PathLike | None = None) -> Image.Image:
    """Decode `value` completely and return it as an RGB `PIL.Image`.

    `value` may be a PIL image, raw encoded bytes, a Hugging Face `Image` dict `{"bytes": ..., "path": ...}`,
    a `data:image/...;base64,` URI, or a file path (relative paths are resolved against `base_dir`, e.g. the
    folder of the jsonl file that names them). Raises `BadImageError` for missing files, empty, truncated or
    undecodable data and images with a zero side.
    """
    image = _decode(value, base_dir)
    return convert_to_rgb(image)


def rgb_image_bytes(value: ImageValue, base_dir: str | os.PathLike | None = None) -> tuple[bytes, str | None]:
    """Validate `value` and return `(encoded_bytes, converted_from_mode)` for storage in a `datasets.Image()`.

    Why: re-encoding every image costs tens of milliseconds each (CPU-hours on 1.8M rows), so an image that is
    already a plain RGB file keeps its original bytes (`converted_from_mode` is None); only images that needed
    a conversion (mode, EXIF rotation, or in-memory PIL input) are re-encoded, losslessly as PNG.
    """
    raw = _read_bytes(value, base_dir) if not isinstance(value, Image.Image) else None
    image = _decode(raw if raw is not None else value, base_dir)
    original_mode = image.mode
    rgb = convert_to_rgb(image)
    if raw is not None and original_mode == "RGB" and rgb is image:
        return raw, None
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue(), (original_mode if original_mode != "RGB" else "EXIF")


def checked_image_header(value: ImageValue, base_dir: str | os.PathLike | None = None) -> bytes:
    """The encoded bytes of `value` after the cheap check: readable, a known format, a non-zero size.

    Why: the full decode (`rgb_image_bytes`) costs milliseconds per image — over an hour for 1.8M rows in one
    process, before step 1. Opening the header costs microseconds and catches missing files, empty and
    undecodable data, zero sizes and decompression bombs; a body that is truncated or corrupt passes here and is
    caught by `to_rgb_image` in the collator (in the dataloader workers), where it is counted and replaced.
    The original bytes are kept whatever the mode; the collator converts to RGB.
    """
    if isinstance(value, Image.Image):  # in-memory images must be encoded anyway: the full path
        return rgb_image_bytes(value, base_dir)[0]
    data = _read_bytes(value, base_dir)
    if not data:
        raise BadImageError(ZERO_SIZE_IMAGE, "empty image data (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:  # parses the header only (and checks for a bomb)
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise BadImageError(IMAGE_TOO_LARGE, str(error)) from None
    except Exception as error:
        raise BadImageError(UNDECODABLE_IMAGE, f"{type(error).__name__}: {error}") from None
    if width == 0 or height == 0:
        raise BadImageError(ZERO_SIZE_IMAGE, f"image of size {width}x{height}")
    return data


def convert_to_rgb(image: Image.Image) -> Image.Image:
    """Return `image` in mode RGB (the same object if it already is, and carries no EXIF rotation).

    Transparency is composited on white (a diagram with a transparent background should look like the page it
    came from, not a black square); 16-bit and 32-bit integer / float images are rescaled to 8 bit rather than
    clipped; CMYK, L, 1, P and the rest go through PIL's own conversion.
    """
    image = _apply_exif_orientation(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_BIT_MODES:
        return _rescale_to_8bit(image).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate by the EXIF orientation tag, as `datasets.Image` does, so both decode paths agree."""
    try:
        orientation = image.getexif().get(Image.ExifTags.Base.Orientation)
    except Exception:  # a corrupt EXIF block is not worth dropping the image for
        return image
    if orientation in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """Map a high-bit-depth grey image to 'L'.

    Values already within 0..255 are kept, 16-bit ranges are divided by 257 (65535 -> 255), anything else
    (negative, float, > 16 bit) is min-max stretched — the only choice that keeps it visible.
    """
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 255:
        scaled = array
    elif low >= 0 and high <= 65535:
        scaled = array / 257.0
    else:
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _read_bytes(value: ImageValue, base_dir: str | os.PathLike | None) -> bytes | None:
    """The encoded bytes behind `value` (None for an in-memory PIL image)."""
    if value is None:
        raise BadImageError(MISSING_IMAGE, "no image value")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        if value.get("path"):
            return _read_bytes(value["path"], base_dir)
        raise BadImageError(MISSING_IMAGE, "image dict has neither 'bytes' nor 'path'")
    if isinstance(value, str) and value.startswith("data:"):
        try:
            return base64.b64decode(value.split(",", 1)[1], validate=False)
        except (IndexError, ValueError) as error:
            raise BadImageError(UNDECODABLE_IMAGE, f"bad data URI: {error}") from None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BadImageError(MISSING_IMAGE_FILE, str(path)) from None
        except OSError as error:
            raise BadImageError(MISSING_IMAGE_FILE, f"{path}: {error}") from None
    if isinstance(value, Image.Image):
        return None
    raise BadImageError(UNDECODABLE_IMAGE, f"unsupported image value of type {type(value).__name__}")


def _decode(value: ImageValue, base_dir: str | os.PathLike | None) -> Image.Image:
    """Open and fully load an image, mapping every failure to a `BadImageError` reason."""
    if isinstance(value, Image.Image):
        image = value
    else:
        data = _read_bytes(value, base_dir)
        if not data:
            raise BadImageError(ZERO_SIZE_IMAGE, "empty image data (0 bytes)")
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise BadImageError(IMAGE_TOO_LARGE, str(error)) from None
        except Exception as error:  # PIL raises UnidentifiedImageError, SyntaxError, struct.error, ...
            raise BadImageError(UNDECODABLE_IMAGE, f"{type(error).__name__}: {error}") from None
    try:
        image.load()  # decode now, so a truncated file fails here and not inside the collator
    except Image.DecompressionBombError as error:
        raise BadImageError(IMAGE_TOO_LARGE, str(error)) from None
    except Exception as error:
        reason = TRUNCATED_IMAGE if "truncat" in str(error).lower() else UNDECODABLE_IMAGE
        raise BadImageError(reason, f"{type(error).__name__}: {error}") from None
    if image.width == 0 or image.height == 0:
        raise BadImageError(ZERO_SIZE_IMAGE, f"image of size {image.width}x{image.height}")
    return image
