"""Procedural toy images and captions, for pretraining and evaluating a tiny CLIP offline.

An image shows one object (a shape, glyph or icon) described by an :class:`Attrs`: colour,
fill pattern, size, position and background. :func:`render` draws it and :func:`caption`
describes it in words from several templates. Everything random comes from the
``numpy.random.Generator`` passed in, so a seed fixes every pixel and every word.

Some colour-object pairs (:data:`HELD_OUT`) are meant to stay out of pretraining, so
zero-shot accuracy on them measures composition rather than memory. A :class:`Shift`
renders the same attributes under a domain shift (clutter, noise, unseen backgrounds,
faded or hue-rotated colours, blur) for benchmarks that need zero-shot to be imperfect.
"""

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Polygons in a unit frame (x right, y down, object within [-1, 1]); True adds, False cuts.
Part = tuple[bool, tuple[tuple[float, float], ...]]


def _regular(n, radius=1.0, start=-90.0, centre=(0.0, 0.0)):
    angles = [math.radians(start + 360.0 * i / n) for i in range(n)]
    return tuple(
        (centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in angles
    )


def _rect(x0, y0, x1, y1):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _star(points=5, inner=0.45):
    outer = _regular(2 * points)
    return tuple((x, y) if i % 2 == 0 else (x * inner, y * inner) for i, (x, y) in enumerate(outer))


def _heart(n=48):
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17.0, -y / 17.0 - 0.1))
    return tuple(pts)


_SHAPES: dict[str, tuple[Part, ...]] = {
    "circle": ((True, _regular(48)),),
    "square": ((True, _rect(-0.85, -0.85, 0.85, 0.85)),),
    "triangle": ((True, ((0.0, -1.0), (1.0, 0.75), (-1.0, 0.75))),),
    "star": ((True, _star()),),
    "cross": ((True, _rect(-0.3, -1.0, 0.3, 1.0)), (True, _rect(-1.0, -0.3, 1.0, 0.3))),
    "heart": ((True, _heart()),),
    "ring": ((True, _regular(48)), (False, _regular(48, 0.55))),
    "arrow": (
        (True, _rect(-1.0, -0.25, 0.1, 0.25)),
        (True, ((0.05, -0.75), (1.0, 0.0), (0.05, 0.75))),
    ),
    "moon": ((True, _regular(48)), (False, _regular(48, 0.85, centre=(0.45, -0.25)))),
    "diamond": ((True, ((0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0))),),
    "hexagon": ((True, _regular(6, start=0.0)),),
    "letter t": ((True, _rect(-0.85, -0.95, 0.85, -0.55)), (True, _rect(-0.2, -0.95, 0.2, 0.95))),
    "letter l": ((True, _rect(-0.65, -0.95, -0.25, 0.95)), (True, _rect(-0.65, 0.55, 0.65, 0.95))),
    "letter h": (
        (True, _rect(-0.8, -0.95, -0.4, 0.95)),
        (True, _rect(0.4, -0.95, 0.8, 0.95)),
        (True, _rect(-0.8, -0.2, 0.8, 0.2)),
    ),
    "house": (
        (True, _rect(-0.75, -0.15, 0.75, 0.95)),
        (True, ((-1.0, -0.1), (0.0, -1.0), (1.0, -0.1))),
        (False, _rect(-0.2, 0.4, 0.2, 0.95)),
    ),
    "key": (
        (True, _regular(32, 0.5, centre=(-0.45, 0.0))),
        (False, _regular(32, 0.22, centre=(-0.45, 0.0))),
        (True, _rect(-0.05, -0.13, 1.0, 0.13)),
        (True, _rect(0.5, 0.1, 0.68, 0.45)),
        (True, _rect(0.8, 0.1, 0.98, 0.38)),
    ),
    "bolt": (
        (
            True,
            ((0.25, -1.0), (-0.6, 0.15), (-0.05, 0.15), (-0.3, 1.0), (0.6, -0.2), (0.05, -0.2)),
        ),
    ),
}

OBJECTS = tuple(_SHAPES)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (40, 165, 50),
    "blue": (35, 70, 215),
    "yellow": (240, 215, 30),
    "orange": (245, 135, 20),
    "purple": (135, 50, 175),
    "pink": (245, 135, 190),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
    "brown": (125, 78, 35),
    "cyan": (40, 205, 215),
    "gray": (128, 128, 128),
}
PATTERNS = ("solid", "striped", "dotted", "checkered", "outlined")
SIZES = ("small", "large")
POSITIONS = ("center", "left", "right", "top", "bottom")
BACKGROUNDS = ("light", "dark", "gradient", "noisy")
SHIFT_BACKGROUNDS = ("colour", "stripes", "blotches")  # never used by pretraining

# A candidate downstream class grid (30 classes): flip-invariant shapes in saturated colours.
BENCHMARK_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
BENCHMARK_OBJECTS = ("circle", "square", "triangle", "star", "heart")
# Colour-object pairs kept out of pretraining: a third of the grid, every colour and object
# among them, so zero-shot on them needs both words understood and composed.
HELD_OUT = frozenset(
    {
        ("red", "circle"),
        ("red", "star"),
        ("green", "triangle"),
        ("blue", "square"),
        ("blue", "heart"),
        ("yellow", "circle"),
        ("yellow", "star"),
        ("purple", "triangle"),
        ("orange", "square"),
        ("orange", "heart"),
    }
)

# Backgrounds that would hide an object of that colour.
_CLASHES = {"white": {"light"}, "black": {"dark"}, "gray": {"noisy"}}


@dataclass(frozen=True)
class Attrs:
    """What an image shows; every field is a word (or words) from the vocabularies above."""

    obj: str
    colour: str
    pattern: str = "solid"
    size: str = "large"
    position: str = "center"
    background: str = "light"


@dataclass(frozen=True)
class Shift:
    """A domain shift applied by :func:`render`; the default changes nothing."""

    distractors: int = 0  # extra small random objects behind the main one
    noise: float = 0.0  # std of Gaussian pixel noise, on a 0-1 scale
    background: str | None = None  # one of SHIFT_BACKGROUNDS, replacing attrs.background
    fade: float = 0.0  # 0-1: blends the object's colours towards the background
    hue: float = 0.0  # degrees: rotates the hue of the whole image
    blur: float = 0.0  # Gaussian blur radius in output pixels


# Zero-shot accuracy of the shipped tiny CLIP on the benchmark grid drops from 97% (clean)
# to 71% / 51% / 54% / 38% / 36% under these, in order (assets/tiny_clip/README.md).
SHIFT_PRESETS = {
    "clutter": Shift(distractors=3),
    "noise": Shift(noise=0.25),
    "background": Shift(background="stripes"),
    "style": Shift(fade=0.4, hue=30.0),
    "mixed": Shift(distractors=2, noise=0.15, background="stripes"),
}


def class_name(colour, obj):
    return f"{colour} {obj}"


def benchmark_classes():
    """The candidate downstream classes as (colour, object) pairs, colour-major order."""
    return [(c, o) for c in BENCHMARK_COLOURS for o in BENCHMARK_OBJECTS]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def sample_attrs(rng, objects=OBJECTS, colours=tuple(COLOURS), exclude=HELD_OUT):
    """Random attributes; ``exclude`` lists (colour, object) pairs never drawn."""
    while True:
        colour, obj = _pick(rng, colours), _pick(rng, objects)
        if (colour, obj) not in exclude:
            break
    size = _pick(rng, SIZES)
    position = _pick(rng, POSITIONS) if size == "small" else "center"
    backgrounds = [b for b in BACKGROUNDS if b not in _CLASHES.get(colour, ())]
    return Attrs(obj, colour, _pick(rng, PATTERNS), size, position, _pick(rng, backgrounds))


# ---------------------------------------------------------------------------------------
# Captions


def caption_with_mentions(attrs, rng):
    """A caption for ``attrs`` and the attributes it states (field name -> word).

    Captions leave attributes out at random, so an image matches many captions; the
    mentions let a contrastive loss treat every caption true of an image as a positive.
    """
    said = {"obj": attrs.obj}
    if rng.random() < 0.9:
        said["colour"] = attrs.colour
    if attrs.pattern != "solid" and rng.random() < 0.8:
        said["pattern"] = attrs.pattern
    if rng.random() < 0.4:
        said["size"] = attrs.size
    if attrs.position != "center" and rng.random() < 0.4:
        said["position"] = attrs.position
    if rng.random() < 0.25:
        said["background"] = attrs.background
    words = [said.get(k) for k in ("size", "colour", "pattern", "obj")]
    noun = " ".join(w for w in words if w)
    article = "an" if noun[0] in "aeiou" else "a"
    text = _pick(rng, _TEMPLATES).format(f"{article} {noun}")
    if "position" in said:
        text += " " + _POSITION_PHRASES[attrs.position]
    if "background" in said:
        text += f" on a {attrs.background} background"
    return text + ".", said


def caption(attrs, rng):
    return caption_with_mentions(attrs, rng)[0]


_TEMPLATES = (
    "a photo of {}",
    "{}",
    "a drawing of {}",
    "a picture of {}",
    "an image of {}",
    "a rendering of {}",
    "a sketch of {}",
    "there is {}",
)
_POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}


# ---------------------------------------------------------------------------------------
# Rendering


def render(attrs, size, rng, shift=None):
    """Draw ``attrs`` as a ``size`` x ``size`` RGB image, optionally under a domain shift."""
    return render_with_mask(attrs, size, rng, shift)[0]


def render_with_mask(attrs, size, rng, shift=None):
    """``render``'s image (the same pixels for the same ``rng`` state) and where its object
    is: the fraction of each pixel that the object's painted area covers, a float
    ``size`` x ``size`` array in [0, 1] (distractors, noise and blur left out)."""
    shift = shift or Shift()
    scale = max(1, min(4, 512 // size))  # supersampling factor, for smooth edges
    side = size * scale
    bg_kind = shift.background or attrs.background
    canvas = _background(bg_kind, size, scale, rng)
    for _ in range(shift.distractors):
        _draw_distractor(canvas, attrs, side, rng)
    colour = _jitter(COLOURS[attrs.colour], rng)
    if shift.fade:
        colour = (1 - shift.fade) * colour + shift.fade * canvas.mean(axis=(0, 1))
    radius = (0.2 + 0.05 * rng.random()) if attrs.size == "small" else (0.34 + 0.08 * rng.random())
    centre = _centre(attrs.position, radius, rng)
    mask = _draw_object(canvas, attrs.obj, attrs.pattern, colour, centre, radius, side, rng)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BOX
    )
    coverage = mask.reshape(size, scale, size, scale).mean(axis=(1, 3))  # as BOX resizes
    return _apply_pixel_shift(image, shift, rng), coverage


def _jitter(rgb, rng, amount=14):
    return np.clip(np.asarray(rgb, float) + rng.uniform(-amount, amount, 3), 0, 255)


def _centre(position, radius, rng):
    offset = max(0.0, 0.47 - radius)
    dx, dy = {"center": (0, 0), "left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1)}[
        position
    ]
    jitter = rng.uniform(-0.03, 0.03, 2)
    return 0.5 + dx * offset + jitter[0], 0.5 + dy * offset + jitter[1]


def _draw_object(canvas, obj, pattern, colour, centre, radius, side, rng):
    """Paint one object into ``canvas`` (float HxWx3, supersampled) in place; returns the
    painted coverage (HxW, in [0, 1])."""
    mask = _shape_mask(obj, centre, radius, rng.uniform(-12, 12), side)
    if pattern == "outlined":
        mask = mask - _erode(mask, max(3, int(side * radius * 0.22)) | 1)
    fill = np.broadcast_to(colour, canvas.shape).copy()
    if pattern in ("striped", "dotted", "checkered"):
        second = _second_tone(colour)
        fill[_pattern_mask(pattern, side, radius, rng)] = second
    canvas *= 1 - mask[..., None]
    canvas += fill * mask[..., None]
    return mask


def _shape_mask(obj, centre, radius, angle_deg, side):
    """Coverage in [0, 1] of ``obj`` centred at ``centre`` (fractions of the side)."""
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    cos, sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    cx, cy, r = centre[0] * side, centre[1] * side, radius * side
    for add, poly in _SHAPES[obj]:
        pts = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in poly]
        draw.polygon(pts, fill=255 if add else 0)
    return np.asarray(img, float) / 255.0


def _erode(mask, width):
    eroded = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(width))
    return np.asarray(eroded, float) / 255.0


def _second_tone(colour):
    """The pattern's other colour: the object's colour lightened or darkened."""
    luminance = float(np.dot(colour, (0.299, 0.587, 0.114))) / 255.0
    target = 0.0 if luminance > 0.55 else 255.0
    return 0.45 * colour + 0.55 * target


def _pattern_mask(pattern, side, radius, rng):
    period = side * radius * rng.uniform(0.35, 0.5)
    yy, xx = np.mgrid[0:side, 0:side].astype(float)
    phase = rng.uniform(0, period, 2)
    if pattern == "striped":
        angle = math.radians(_pick(rng, (0, 45, 90, 135)) + rng.uniform(-10, 10))
        t = xx * math.cos(angle) + yy * math.sin(angle) + phase[0]
        return (t % period) < period / 2
    u, v = (xx + phase[0]) % period, (yy + phase[1]) % period
    if pattern == "checkered":
        return (u < period / 2) ^ (v < period / 2)
    return (u - period / 2) ** 2 + (v - period / 2) ** 2 < (period * 0.28) ** 2


def _background(kind, size, scale, rng):
    """A float (size*scale)^2 x 3 background of the given kind."""
    side = size * scale
    if kind == "light":
        return np.full((side, side, 3), _jitter((228, 228, 224), rng, 18))
    if kind == "dark":
        return np.full((side, side, 3), _jitter((38, 38, 42), rng, 18))
    if kind == "gradient":
        a, b = _jitter((90, 90, 90), rng, 60), _jitter((190, 190, 190), rng, 60)
        return _linear_blend(a, b, side, rng)
    if kind == "noisy":
        low = rng.normal(128 + rng.uniform(-30, 30), 32, (size, size, 1)).repeat(3, axis=2)
        return _upsample(low, scale)
    if kind == "colour":
        return np.full((side, side, 3), _random_saturated(rng))
    if kind == "stripes":
        mask = _pattern_mask("striped", side, rng.uniform(0.25, 0.45), rng)[..., None]
        return np.where(mask, _random_saturated(rng), _random_saturated(rng))
    if kind == "blotches":
        grid = np.stack([_random_saturated(rng) for _ in range(16)]).reshape(4, 4, 3)
        small = Image.fromarray(grid.astype(np.uint8)).resize(
            (side, side), Image.Resampling.BICUBIC
        )
        return np.asarray(small, float)
    raise ValueError(
        f"unknown background {kind!r}; expected one of {BACKGROUNDS + SHIFT_BACKGROUNDS}"
    )


def _linear_blend(a, b, side, rng):
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:side, 0:side] / max(1, side - 1)
    t = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    return (1 - t) * a + t * b


def _upsample(low, scale):
    return low.repeat(scale, axis=0).repeat(scale, axis=1)


def _random_saturated(rng):
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0))
    return np.array([r, g, b]) * 255.0


def _draw_distractor(canvas, attrs, side, rng):
    obj, colour = _pick(rng, OBJECTS), _pick(rng, tuple(COLOURS))
    radius = rng.uniform(0.12, 0.2)
    centre = tuple(rng.uniform(radius, 1 - radius, 2))
    rgb = _jitter(COLOURS[colour], rng)
    _draw_object(canvas, obj, _pick(rng, PATTERNS), rgb, centre, radius, side, rng)


def _apply_pixel_shift(image, shift, rng):
    if shift.hue:
        h, s, v = image.convert("HSV").split()
        offset = int(round(shift.hue / 360.0 * 256))
        h = h.point(lambda x: (x + offset) % 256)
        image = Image.merge("HSV", (h, s, v)).convert("RGB")
    if shift.blur:
        image = image.filter(ImageFilter.GaussianBlur(shift.blur))
    if shift.noise:
        arr = np.asarray(image, float) + rng.normal(0, shift.noise * 255, (*image.size[::-1], 3))
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return image
