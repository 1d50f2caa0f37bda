import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, get_cfg_default
from engine.data import build_transform
from engine.data.transforms import AVAILABLE_TRANSFORMS


def cfg_with(size=(16, 16), transforms=(), interpolation="nearest", **input_keys):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.TRANSFORMS = transforms
    cfg.INPUT.INTERPOLATION = interpolation
    for key, value in input_keys.items():
        cfg.INPUT[key] = value
    return cfg


def striped(width=40, height=20):
    """Red left quarter, blue middle half, green right quarter."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 4] = (255, 0, 0)
    pixels[:, width // 4 : 3 * width // 4] = (0, 0, 255)
    pixels[:, 3 * width // 4 :] = (0, 255, 0)
    return Image.fromarray(pixels)


def test_test_transform_resizes_short_side_then_centre_crops():
    out = build_transform(cfg_with(), is_train=False)(striped())
    # 40x20 -> 32x16 (short side to 16) -> centre 16x16 = the blue middle half only
    assert out.shape == (3, 16, 16)
    assert torch.equal(out, torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 16, 16))

    ops = build_transform(cfg_with(size=(12, 20), interpolation="bicubic"), False).transforms
    assert [type(op) for op in ops] == [T.Resize, T.CenterCrop, T.ToTensor]
    assert ops[0].size == 20 and ops[0].interpolation == T.InterpolationMode.BICUBIC
    assert build_transform(cfg_with(size=(12, 20)), False)(striped()).shape == (3, 12, 20)


def test_normalize_uses_configured_mean_and_std():
    cfg = cfg_with(transforms=("normalize",), PIXEL_MEAN=CLIP_PIXEL_MEAN, PIXEL_STD=CLIP_PIXEL_STD)
    image = Image.new("RGB", (16, 16), (255, 0, 51))
    for is_train in (True, False):
        out = build_transform(cfg, is_train)(image)
        expected = (torch.tensor([1.0, 0.0, 0.2]) - torch.tensor(CLIP_PIXEL_MEAN)) / torch.tensor(
            CLIP_PIXEL_STD
        )
        assert torch.allclose(out[:, 5, 5], expected, atol=1e-5)
    assert torch.equal(
        build_transform(cfg_with(), False)(image)[:, 0, 0], torch.tensor([1.0, 0.0, 0.2])
    )


def test_train_resize_only_without_crops():
    plain = build_transform(cfg_with(transforms=("random_flip",)), True).transforms
    assert [type(op) for op in plain] == [T.Resize, T.RandomHorizontalFlip, T.ToTensor]
    assert tuple(plain[0].size) == (16, 16)  # both sides: the aspect changes, as in Dassl

    cfg = cfg_with(
        transforms=("random_resized_crop", "normalize"),
        interpolation="bicubic",
        RRCROP_SCALE=(0.5, 1.0),
    )
    rrc = build_transform(cfg, True).transforms
    assert [type(op) for op in rrc] == [T.RandomResizedCrop, T.ToTensor, T.Normalize]
    assert rrc[0].scale == (0.5, 1.0) and rrc[0].interpolation == T.InterpolationMode.BICUBIC

    crop = build_transform(cfg_with(transforms=("random_crop",), CROP_PADDING=3), True)
    assert type(crop.transforms[0]) is T.RandomCrop and crop.transforms[0].padding == 3
    assert crop(Image.new("RGB", (16, 16))).shape == (3, 16, 16)


def test_rrcrop_scale_reaches_the_crop():
    """Scale (1, 1) with a square image can only crop the whole image."""
    cfg = cfg_with(transforms=("random_resized_crop",), RRCROP_SCALE=(1.0, 1.0))
    image = striped(width=32, height=32)
    torch.manual_seed(0)
    out = build_transform(cfg, True)(image)
    assert torch.equal(out, build_transform(cfg_with(), True)(image))


def test_every_named_transform_builds_and_runs():
    torch.manual_seed(0)
    cfg = cfg_with(transforms=AVAILABLE_TRANSFORMS, GB_K=3, CUTOUT_LEN=4)
    out = build_transform(cfg, True)(striped())
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32


def test_cutout_zeroes_a_square():
    torch.manual_seed(0)
    cfg = cfg_with(transforms=("cutout",), CUTOUT_N=1, CUTOUT_LEN=4)
    out = build_transform(cfg, True)(Image.new("RGB", (16, 16), (255, 255, 255)))
    zeros = int((out[0] == 0).sum())
    assert 4 <= zeros <= 16 and bool((out[0] == 1).any())


def test_unknown_names_are_errors_listing_valid_ones():
    with pytest.raises(ValueError, match="random_flipp.*valid: random_resized_crop, random_flip"):
        build_transform(cfg_with(transforms=("random_flipp",)), True)
    with pytest.raises(ValueError, match="INTERPOLATION 'lanczos'.*bilinear, bicubic, nearest"):
        build_transform(cfg_with(interpolation="lanczos"), False)
