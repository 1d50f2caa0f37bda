"""Load a CLIP model by OpenAI model name or from a local checkpoint file."""

import os
import pickle
import re
import socket
import warnings

import torch

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    from clip.model import build_model

CLIP_CACHE_DIR = os.path.expanduser(os.environ.get("CLIP_CACHE_DIR", "~/.cache/clip"))
DOWNLOAD_TIMEOUT_S = 30


class ClipWeightsNotFound(FileNotFoundError):
    """The requested CLIP weights are neither on disk nor downloadable."""


def available_models():
    return clip.available_models()


def resolve_checkpoint(name_or_path, cache_dir=CLIP_CACHE_DIR):
    """Return the local file for a model name or path, downloading a named model if possible."""
    if os.path.isfile(os.path.expanduser(name_or_path)):
        return os.path.expanduser(name_or_path)
    if name_or_path not in clip.clip._MODELS:
        if name_or_path.endswith((".pt", ".pth", ".tar")):  # a file path, not a model name
            raise ClipWeightsNotFound(
                f"MODEL.BACKBONE.NAME '{name_or_path}': no such checkpoint file (looked for "
                f"{os.path.abspath(os.path.expanduser(name_or_path))}). A relative path is "
                "taken from the current directory: run from the repository root or give an "
                "absolute path."
            )
        raise ClipWeightsNotFound(
            f"MODEL.BACKBONE.NAME '{name_or_path}' is neither a file nor a CLIP model name. "
            f"Use one of {', '.join(available_models())} or a path to a checkpoint "
            "(TorchScript archive or state dict in OpenAI's layout)."
        )
    url = clip.clip._MODELS[name_or_path]
    target = os.path.join(cache_dir, os.path.basename(url))
    if os.path.isfile(target):
        return target
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return clip.clip._download(url, cache_dir)
    except Exception as err:  # no network, proxy, interrupted transfer...
        raise ClipWeightsNotFound(
            f"CLIP weights for '{name_or_path}' are not on disk and could not be downloaded "
            f"({type(err).__name__}: {err}).\n"
            f"  looked for: {target}\n"
            f"  would fetch: {url}\n"
            f"  fix: on a machine with internet, download that URL and copy the file to "
            f"{target} (or set CLIP_CACHE_DIR to the folder holding it), or pass the file's "
            "path as MODEL.BACKBONE.NAME / --backbone."
        ) from err
    finally:
        socket.setdefaulttimeout(previous_timeout)


class ClipCheckpointError(ValueError):
    """A MODEL.BACKBONE.NAME file that does not hold CLIP's weights."""


CLIP_FILE = (
    "MODEL.BACKBONE.NAME must name CLIP's weights: OpenAI's TorchScript archive (such as "
    "ViT-B-32.pt, which a model name like ViT-B/32 downloads) or a state dict in OpenAI's "
    "layout (keys such as visual.conv1.weight, transformer.resblocks.0.attn.in_proj_weight, "
    "token_embedding.weight, text_projection)."
)
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's archive; its older format
RUN_CHECKPOINT = re.compile(r"^model(\.pth\.tar-\d+|-best\.pth\.tar)$")  # engine/checkpoint.py


def _not_clip(path, why):
    return ClipCheckpointError(f"'{path}' is not a CLIP checkpoint: {why}. {CLIP_FILE}")


def _unreadable(path, err):
    """Why ``path`` could not be loaded, from its first bytes and the error."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        shown = head[:32].decode("utf-8", "replace").split("\n")[0]
        return _not_clip(path, f"it is not a file that torch.save writes (it begins {shown!r})")
    if RUN_CHECKPOINT.match(os.path.basename(path)) or isinstance(err, pickle.UnpicklingError):
        return _not_clip(
            path,
            "it holds Python objects besides tensors, as the checkpoints of a training run "
            "(model.pth.tar-N: the learned prompts with their optimiser state, not CLIP) do; "
            "evaluate such a run with --eval-only --model-dir RUN",
        )
    reason = str(err).split(". ")[0].strip() or type(err).__name__
    return _not_clip(path, f"it is truncated or corrupt ({reason}); download or copy it again")


def _read_state_dict(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        pass  # not a TorchScript archive: a plain state dict
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # EOFError, RuntimeError, UnpicklingError, KeyError, ...
        raise _unreadable(path, err) from err
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "text_projection" not in obj:
        keys = sorted(obj)[:6] if isinstance(obj, dict) else None
        held = f"a dict with the keys {keys}" if keys is not None else type(obj).__name__
        if keys is not None and len(obj) > 6:
            held += f" and {len(obj) - 6} more"
        raise _not_clip(path, f"it holds {held}, without CLIP's text_projection")
    return obj


def load_clip(name_or_path, cache_dir=CLIP_CACHE_DIR):
    """Build a frozen CLIP model in float32 on the CPU, in eval mode."""
    path = resolve_checkpoint(name_or_path, cache_dir)
    model = build_model(_read_state_dict(path)).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def input_resolution(model):
    return model.visual.input_resolution


def cast_clip(model, dtype):
    """Cast CLIP's weights to ``dtype`` the way OpenAI's ``convert_weights`` does for fp16.

    Only convolutions, linear layers, attention projections and the two projection matrices
    change; LayerNorms and embeddings stay float32 (CLIP's LayerNorm computes in float32).
    """
    if dtype == torch.float32:
        return model.float()

    def cast(module):
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
        if isinstance(module, torch.nn.MultiheadAttention):
            for attr in (
                "in_proj_weight",
                "q_proj_weight",
                "k_proj_weight",
                "v_proj_weight",
                "in_proj_bias",
                "bias_k",
                "bias_v",
            ):
                tensor = getattr(module, attr)
                if tensor is not None:
                    tensor.data = tensor.data.to(dtype)
        for attr in ("text_projection", "proj"):
            tensor = getattr(module, attr, None)
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.to(dtype)

    model.apply(cast)
    return model
