"""Decoding image files, with errors that name the file and the way out."""

import os

import numpy as np
from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BAD_IMAGE_CHOICES = ("error", "skip")


class BadImageError(RuntimeError):
    """An image file that is missing, corrupt or truncated (``path``)."""

    def __init__(self, message, path=""):
        super().__init__(message)
        self.path = path


# Integer modes holding 16-bit samples (Pillow reads 16-bit PNG and TIFF files as I;16 or, in
# older versions, as I); "convert('RGB')" would clip them at 255, making most images white.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(img):
    """``img`` in RGB, for every PIL mode: 16-bit and 32-bit integer samples are scaled from
    0..65535 to 0..255, floats (mode F) from 0..1; premultiplied alpha (La) is undone first;
    the other modes as Pillow converts them (alpha dropped, as Dassl does)."""
    if img.mode in SIXTEEN_BIT_MODES:
        samples = np.clip(np.asarray(img, dtype=np.float64), 0, 65535) / 257.0
    elif img.mode == "F":
        samples = np.clip(np.asarray(img, dtype=np.float64), 0, 1) * 255.0
    else:
        return (img.convert("LA") if img.mode == "La" else img).convert("RGB")
    rgb = Image.fromarray(np.rint(samples).astype(np.uint8)).convert("RGB")
    rgb.info.update(img.info)  # its EXIF data (the orientation tag) too, as convert keeps it
    return rgb


ORIENTATION = 0x0112  # the EXIF orientation tag: 1 is upright, 2..8 flips and rotations


def orientation_tag(img):
    """The EXIF orientation tag of ``img`` when it asks to turn the pixels (2..8), else None."""
    tag = img.getexif().get(ORIENTATION)
    return tag if tag in range(2, 9) else None


def _is_empty(path):
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def read_image(path):
    """The image at ``path`` as an RGB PIL image, fully decoded (so truncation shows here)."""
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, zlib.error, ...
        why = "the file is empty (0 bytes)" if _is_empty(path) else f"{type(err).__name__}: {err}"
        raise BadImageError(
            f"Cannot read image '{path}' ({why}). Replace it with a readable copy; or delete "
            "it and remove its entry from the split file that lists it (a split file that "
            "the dataset generated, such as ImageFolder's split.json, is made again without "
            "it when deleted); or set DATASET.ON_BAD_IMAGE skip to leave unreadable images "
            "out with a warning.",
            path,
        ) from err
