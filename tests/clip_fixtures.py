"""Small CLIP checkpoints on disk, in OpenAI's layout, for tests of the real loading code."""

import warnings

import torch
from clip.model import CLIP, convert_weights


def make_clip(seed=0, image_resolution=32, vision_layers=2, vision_width=64, text_layers=2):
    """A randomly initialised ViT CLIP with the real 49408-token vocabulary and 77 tokens."""
    torch.manual_seed(seed)
    return CLIP(
        embed_dim=32,
        image_resolution=image_resolution,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=8,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,  # OpenAI's build_model infers heads as width // 64
        transformer_heads=1,
        transformer_layers=text_layers,
    )


def save_clip_checkpoint(path, seed=0, jit=False, **sizes):
    """Save a small CLIP as OpenAI ships it: fp16 state dict (or a TorchScript archive)."""
    model = make_clip(seed, **sizes)
    convert_weights(model)
    if jit:
        image = torch.zeros(
            1, 3, model.visual.input_resolution, model.visual.input_resolution, dtype=torch.float16
        )
        text = torch.zeros(1, 77, dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about data-dependent branches
            torch.jit.save(torch.jit.trace(model, (image, text), check_trace=False), str(path))
    else:
        torch.save(model.state_dict(), str(path))
    return str(path)
