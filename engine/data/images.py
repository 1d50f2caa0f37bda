"""Decoding image files, with errors that name the file and the way out."""

from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BAD_IMAGE_CHOICES = ("error", "skip")


class BadImageError(RuntimeError):
    """An image file that is missing, corrupt or truncated."""


def read_image(path):
    """The image at ``path`` as an RGB PIL image, fully decoded (so truncation shows here)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, zlib.error, ...
        raise BadImageError(
            f"Cannot read image '{path}' ({type(err).__name__}: {err}). Fix or remove the "
            "file, or set DATASET.ON_BAD_IMAGE skip to drop unreadable images with a warning."
        ) from err
