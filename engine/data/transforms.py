"""Image transforms by Dassl's names and in Dassl's order.

Train: Resize(INPUT.SIZE) only when neither random_crop nor random_resized_crop is listed,
then the listed augmentations, ToTensor, cutout, normalize, gaussian_noise.
Test: resize the short side to max(INPUT.SIZE), CenterCrop(INPUT.SIZE), ToTensor, normalize.
Both start by turning the image upright by its EXIF tag with INPUT.EXIF_TRANSPOSE True.
These choices move accuracy by points, so they are kept exactly.
"""

import torch
import torchvision.transforms as T
from PIL import ImageOps
from torchvision.transforms import InterpolationMode

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAILABLE_TRANSFORMS = (
    "random_resized_crop",
    "random_flip",
    "random_crop",
    "center_crop",
    "normalize",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
    "gaussian_noise",
    "cutout",
)


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` (clipped at the border) in a CHW tensor."""

    def __init__(self, n_holes=1, length=16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img):
        img = img.clone()
        h, w = img.shape[-2:]
        for _ in range(self.n_holes):
            y = int(torch.randint(h, ()))
            x = int(torch.randint(w, ()))
            half = self.length // 2
            img[..., max(0, y - half) : y + half, max(0, x - half) : x + half] = 0
        return img

    def __repr__(self):
        return f"Cutout(n_holes={self.n_holes}, length={self.length})"


class GaussianNoise:
    """With probability ``p``, add N(mean, std) noise to a tensor image."""

    def __init__(self, mean=0.0, std=0.15, p=0.5):
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img):
        if torch.rand(()) >= self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean

    def __repr__(self):
        return f"GaussianNoise(mean={self.mean}, std={self.std}, p={self.p})"


class ExifTranspose:
    """Turn a PIL image upright by its EXIF orientation tag (INPUT.EXIF_TRANSPOSE)."""

    def __call__(self, img):
        return ImageOps.exif_transpose(img)

    def __repr__(self):
        return "ExifTranspose()"


def build_transform(cfg, is_train=True, choices=None):
    """The train or test transform for ``choices`` (default INPUT.TRANSFORMS)."""
    if cfg.INPUT.NO_TRANSFORM:
        raise ValueError(
            "INPUT.NO_TRANSFORM is not supported: batches need tensors of one size; "
            "use INPUT.TRANSFORMS () for resize and ToTensor only"
        )
    choices = tuple(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in AVAILABLE_TRANSFORMS]
    if unknown:
        raise ValueError(
            f"Unknown transform(s) {', '.join(unknown)} in INPUT.TRANSFORMS; "
            f"valid: {', '.join(AVAILABLE_TRANSFORMS)}"
        )
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(
            f"Unknown INPUT.INTERPOLATION '{cfg.INPUT.INTERPOLATION}'; "
            f"valid: {', '.join(INTERPOLATION_MODES)}"
        )
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    build = _train_ops if is_train else _test_ops
    upright = [ExifTranspose()] if cfg.INPUT.EXIF_TRANSPOSE else []
    return T.Compose(upright + build(cfg, choices, size, interp))


def _normalize(cfg):
    return T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)


def _train_ops(cfg, choices, size, interp):
    inp = cfg.INPUT
    ops = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        ops.append(T.Resize(size, interpolation=interp))
    if "random_crop" in choices:
        ops.append(T.RandomCrop(size, padding=inp.CROP_PADDING))
    if "random_resized_crop" in choices:
        ops.append(T.RandomResizedCrop(size, scale=tuple(inp.RRCROP_SCALE), interpolation=interp))
    if "center_crop" in choices:
        ops.append(T.CenterCrop(size))
    if "random_flip" in choices:
        ops.append(T.RandomHorizontalFlip())
    if "colorjitter" in choices:
        ops.append(
            T.ColorJitter(
                brightness=inp.COLORJITTER_B,
                contrast=inp.COLORJITTER_C,
                saturation=inp.COLORJITTER_S,
                hue=inp.COLORJITTER_H,
            )
        )
    if "randomgrayscale" in choices:
        ops.append(T.RandomGrayscale(p=inp.RGS_P))
    if "gaussian_blur" in choices:
        ops.append(T.RandomApply([T.GaussianBlur(inp.GB_K)], p=inp.GB_P))
    ops.append(T.ToTensor())
    if "cutout" in choices:
        ops.append(Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN))
    if "normalize" in choices:
        ops.append(_normalize(cfg))
    if "gaussian_noise" in choices:
        ops.append(GaussianNoise(inp.GN_MEAN, inp.GN_STD))
    return ops


def _test_ops(cfg, choices, size, interp):
    ops = [T.Resize(max(size), interpolation=interp), T.CenterCrop(size), T.ToTensor()]
    if "normalize" in choices:
        ops.append(_normalize(cfg))
    return ops
