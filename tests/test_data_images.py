"""Every PIL mode becomes the right RGB image: 16-bit and float samples are scaled, not clipped."""

import numpy as np
import pytest
from PIL import Image

from engine.data.images import read_image, to_rgb

RAMP = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every 8-bit grey level once
COLOURS = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def grey(values):
    return np.repeat(values[..., None], 3, axis=2)


def sixteen_bit(mode):
    """The ramp as 16-bit samples (x 257: 255 -> 65535) in ``mode``'s byte order."""
    samples = RAMP.astype(np.uint16) * 257
    order = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, (16, 16), samples.astype(order).tobytes())


GREY_MODES = {
    "L": lambda: Image.fromarray(RAMP),
    "LA": lambda: Image.fromarray(RAMP).convert("LA"),
    "La": lambda: Image.fromarray(RAMP).convert("LA").convert("La"),
    "I": lambda: Image.fromarray(RAMP.astype(np.int32) * 257),
    "I;16": lambda: sixteen_bit("I;16"),
    "I;16L": lambda: sixteen_bit("I;16L"),
    "I;16B": lambda: sixteen_bit("I;16B"),
    "I;16N": lambda: sixteen_bit("I;16N"),
    "F": lambda: Image.fromarray(RAMP.astype(np.float32) / 255),
}
# Colour modes Pillow converts itself: (how to make the mode, largest and mean error per
# channel; 8-bit YCbCr, HSV and LAB cannot hold every RGB colour exactly).
COLOUR_MODES = {
    "RGB": (lambda im: im, 0, 0),
    "RGBA": (lambda im: im.convert("RGBA"), 0, 0),
    "RGBX": (lambda im: im.convert("RGBX"), 0, 0),
    "RGBa": (lambda im: im.convert("RGBa"), 0, 0),
    "CMYK": (lambda im: im.convert("CMYK"), 0, 0),
    "P": (lambda im: im.quantize(256), 0, 0),  # 256 pixels: the palette holds every colour
    "PA": (lambda im: im.quantize(256).convert("PA"), 0, 0),
    "YCbCr": (lambda im: im.convert("YCbCr"), 3, 1.5),
    "HSV": (lambda im: im.convert("HSV"), 6, 1.0),
    "LAB": (lambda im: im.convert("LAB"), 20, 1.5),
}


@pytest.mark.parametrize("mode", list(GREY_MODES))
def test_grey_modes_keep_every_level(mode):
    image = GREY_MODES[mode]()
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb), grey(RAMP))


def test_one_bit_images_are_black_and_white():
    image = Image.fromarray(RAMP).convert("1", dither=Image.Dither.NONE)
    np.testing.assert_array_equal(np.asarray(to_rgb(image)), grey((RAMP >= 128) * 255))


@pytest.mark.parametrize("mode", list(COLOUR_MODES))
def test_colour_modes_keep_the_colours(mode):
    make, largest, mean = COLOUR_MODES[mode]
    image = make(Image.fromarray(COLOURS))
    assert image.mode == mode
    error = np.abs(np.asarray(to_rgb(image)).astype(int) - COLOURS)
    assert error.max() <= largest and error.mean() <= mean


def test_every_pil_mode_is_covered():
    assert set(GREY_MODES) | set(COLOUR_MODES) | {"1"} == set(Image.MODES)


def test_a_16_bit_png_is_read_with_its_grey_levels(tmp_path):
    path = tmp_path / "depth.png"
    sixteen_bit("I;16").save(path)
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")
        clipped = np.asarray(opened.convert("RGB"))
    assert (clipped[RAMP > 0] == 255).all()  # Pillow alone: everything but black is white
    np.testing.assert_array_equal(np.asarray(read_image(path)), grey(RAMP))
