"""Suite-wide fixtures: threads, the reference outputs, a small CLIP, class names, a batch and
a model builder that the model tests share."""

import copy
import os
from pathlib import Path

import pytest
import torch
import tqdm

from models import (
    CAVPTCfg,
    CoOpModel,
    DPTModel,
    GuidanceCfg,
    TextPromptCfg,
    VisualPromptCfg,
    VLPModel,
    VPTModel,
)
from models.ivlp import IVLPModel
from models.maple import MaPLeModel
from models.settings import IVLPCfg, MaPLeCfg
from tests.clip_fixtures import make_clip

# No tqdm monitor thread in the test process: a child forked (tests/forked_train.py) while it
# held tqdm's write lock would wait for that lock forever at its first progress bar.
tqdm.tqdm.monitor_interval = 0

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden"
# Single-token and multi-token names (underscores read as spaces, as in split files).
CLASSNAMES = ["face", "leopard", "golden_retriever", "sea_lion_pup", "motor_bike"]
TEMPLATE = "a photo of a {}."
N_BLOCKS = 3  # ViT blocks of the shared small CLIP


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """The tiny test models run many small ops: one thread is several times faster on shared
    CPUs than a contended pool, and results are reproducible. ``OMP_NUM_THREADS`` keeps it so
    when a test runs ``train.cli`` in this process (it would take the CPUs available), and so
    in the children of tests: a child forked after this process ran OpenMP on a team of more
    than one thread hangs at its first parallel operator (libgomp's team does not survive a
    fork), as ``tests/forked_train.py`` runs do."""
    previous = torch.get_num_threads()
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    if saved is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = saved


def under_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def golden_dir():
    """``../shared/golden``, the original code's reference outputs. Missing, the test skips on
    a developer's machine and fails under CI (``CI`` set), where they must always be checked."""
    if not GOLDEN_DIR.is_dir():
        message = f"reference outputs of the original code not found at {GOLDEN_DIR}"
        if under_ci():
            pytest.fail(f"{message} (CI is set: the golden tests must run)")
        pytest.skip(message)
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def classnames():
    return list(CLASSNAMES)


@pytest.fixture(scope="session")
def small_clip():
    """A float32 ViT CLIP (3 blocks of width 64, 32x32 images) shared by the whole session:
    tests that change it (casting, training) work on a ``copy.deepcopy``."""
    return make_clip(seed=3, vision_layers=N_BLOCKS).float().eval().requires_grad_(False)


@pytest.fixture(scope="session")
def image_batch():
    """Four normalised-looking 32x32 images and their labels."""
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return images, torch.tensor([0, 1, 4, 3])


SMALL_SETTINGS = dict(
    text_cfg=TextPromptCfg(n_ctx=4),
    vpt_cfg=VisualPromptCfg(n_ctx=2),
    guidance_cfg=GuidanceCfg(epochs=2),
    cavpt_cfg=CAVPTCfg(first_block=2, top_k=3),
    # the small CLIP has 2 text blocks and 3 image blocks
    ivlp_cfg=IVLPCfg(n_ctx_text=3, n_ctx_vision=2, ctx_init="", depth_text=2, depth_vision=3),
    maple_cfg=MaPLeCfg(n_ctx=2, ctx_init="a photo of a", depth=2),
)
MODEL_TYPES = {
    "coop": CoOpModel,
    "vpt": VPTModel,
    "vlp": VLPModel,
    "dpt": DPTModel,
    "ivlp": IVLPModel,
    "maple": MaPLeModel,
}
SETTINGS_OF = {
    "coop": ("text_cfg",),
    "vpt": ("vpt_cfg",),
    "vlp": ("text_cfg", "vpt_cfg", "guidance_cfg"),
    "dpt": ("text_cfg", "vpt_cfg", "guidance_cfg", "cavpt_cfg"),
    "ivlp": ("ivlp_cfg",),
    "maple": ("maple_cfg",),
}
WITHOUT_TEMPLATE = ("coop", "ivlp", "maple")  # models that use no hand-crafted prompt


@pytest.fixture(scope="session")
def method_model():
    """``method_model(name, seed=0)``: the model of the registered method ``name``, built by
    the method from its own tiny config (``configs/trainers/<folder>/tiny.yaml``) on a copy of
    the shipped tiny CLIP that config names, for ``CLASSNAMES`` and ``TEMPLATE``: what the
    tests that cover every method build, with no list of methods to edit."""
    import trainers  # noqa: F401  (registers the methods)
    from engine.config import get_cfg_default, merge_from_file
    from engine.registry import TRAINER_REGISTRY
    from models.clip_loader import load_clip
    from scripts.spec import trainer_config
    from tests.run_fixtures import REPO

    clips = {}

    def build(name, seed=0):
        cfg = get_cfg_default()
        merge_from_file(cfg, trainer_config(name, "tiny"))
        cfg.TRAINER.NAME = name
        cfg.freeze()
        backbone = os.path.join(REPO, cfg.MODEL.BACKBONE.NAME)
        if backbone not in clips:
            clips[backbone] = load_clip(backbone)
        method = TRAINER_REGISTRY.get(name)(cfg)
        torch.manual_seed(seed)
        return method.build_model(copy.deepcopy(clips[backbone]), list(CLASSNAMES), TEMPLATE)

    return build


@pytest.fixture(scope="session")
def build_model(small_clip):
    """``build_model(kind, clip_model=None, classnames=CLASSNAMES, seed=0, **settings)``: a
    model of ``MODEL_TYPES`` with small settings (any of them replaced by keyword) on a copy
    of the shared CLIP, its prompts initialised after ``torch.manual_seed(seed)``."""

    def build(kind, clip_model=None, classnames=CLASSNAMES, seed=0, template=TEMPLATE, **settings):
        clip_model = copy.deepcopy(small_clip) if clip_model is None else clip_model
        kwargs = {name: settings.pop(name, SMALL_SETTINGS[name]) for name in SETTINGS_OF[kind]}
        kwargs.update(settings)
        torch.manual_seed(seed)
        if kind in WITHOUT_TEMPLATE:
            return MODEL_TYPES[kind](clip_model, classnames, **kwargs)
        return MODEL_TYPES[kind](clip_model, classnames, template, **kwargs)

    return build
