"""A trained run as a classifier: ``load_classifier(RUN).predict(images)``.

The model is built by the run's own trainer, from its saved config and class names, and its
weights are loaded as ``train.py --eval-only --model-dir RUN`` loads them; images go through
the run's test transform and ``model_inference``, as in the trainer's evaluation. So a
prediction here is the prediction that the evaluation scored.
"""

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import datasets  # noqa: F401  (registers the datasets and their config keys)
import trainers  # noqa: F401  (registers the trainers and their config keys)
from engine.config import merge_from_list
from engine.data import BadImageError, build_transform, read_image
from engine.data.images import orientation_tag
from engine.run_inputs import read_run_inputs
from trainers.builtin import ClipTrainer
from trainers.method import method_for


class SavedClasses:
    """What a trainer reads from its data to build the model, without the dataset: the class
    names and the dataset's prompt template (``ClipTrainer(cfg, method, data=...)``)."""

    def __init__(self, classnames, template):
        self.classnames = list(classnames)
        self.lab2cname = dict(enumerate(self.classnames))
        self.num_classes = len(self.classnames)
        self.dataset = SimpleNamespace(template=template, classnames=self.classnames)


class IgnoredOrientation(UserWarning):
    """Images whose EXIF orientation tag the run does not apply (INPUT.EXIF_TRANSPOSE False)."""


def orientation_note(images):
    """What to tell about ``images`` (paths, or ``image <i>``) whose orientation tag is not
    applied: the model sees them as stored, as it saw its training images."""
    shown = ", ".join(images[:5]) + (f" and {len(images) - 5} more" if len(images) > 5 else "")
    return (
        f"{len(images)} image(s) carry an EXIF orientation tag that this run does not apply "
        f"(INPUT.EXIF_TRANSPOSE False, as it trained): the model sees them as stored, "
        f"possibly on their side: {shown}. To turn them upright, pass INPUT.EXIF_TRANSPOSE "
        "True (predict.py: --opts INPUT.EXIF_TRANSPOSE True), best for a run trained so."
    )


@dataclass
class Predictions:
    """Class probabilities ``probs`` [N, C] (softmax of the model's logits, float32, CPU) over
    ``classnames``; ``paths``: the image files, in the order of the rows, when read from
    files; ``ignored_orientation``: the images (paths, or ``image <i>``) whose EXIF
    orientation tag was not applied (INPUT.EXIF_TRANSPOSE False; also an
    ``IgnoredOrientation`` warning)."""

    probs: torch.Tensor
    classnames: list[str]
    paths: list[str] | None = None
    ignored_orientation: list[str] = field(default_factory=list)

    @property
    def names(self):
        """The most probable class of each image."""
        return [self.classnames[i] for i in self.probs.argmax(1).tolist()]

    def top(self, k=5):
        """Per image, the ``k`` most probable classes as (class name, probability)."""
        values, indices = self.probs.topk(min(k, len(self.classnames)), dim=1)
        return [
            [(self.classnames[i], p) for i, p in zip(row_i, row_p)]
            for row_i, row_p in zip(indices.tolist(), values.tolist())
        ]


class ImageFiles(Dataset):
    """Image files through a transform: (index, tensor, "", whether an EXIF orientation tag
    was ignored) or, for a file that cannot be read, (index, None, the reason, False)."""

    def __init__(self, paths, transform, upright):
        self.paths = list(paths)
        self.transform = transform
        self.upright = upright  # INPUT.EXIF_TRANSPOSE: the transform applies the tag

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            image = read_image(self.paths[index])
        except BadImageError as err:
            cause = err.__cause__
            return index, None, f"{type(cause).__name__}: {cause}", False
        ignored = not self.upright and orientation_tag(image) is not None
        return index, self.transform(image), "", ignored


def _collate_files(samples):
    readable = [(i, x) for i, x, _, _ in samples if x is not None]
    failed = [(i, why) for i, x, why, _ in samples if x is None]
    ignored = [i for i, _, _, tag in samples if tag]
    images = torch.stack([x for _, x in readable]) if readable else None
    return [i for i, _ in readable], images, failed, ignored


class Classifier:
    """A trained run, ready to predict; made by ``load_classifier``.

    ``trainer`` is the run's trainer, built and loaded as for ``--eval-only``; ``transform``
    the run's test transform (PIL image -> normalised tensor); ``classnames`` the classes.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.cfg = trainer.cfg
        self.classnames = list(trainer.dm.classnames)
        self.transform = build_transform(self.cfg, is_train=False)
        trainer.set_mode("eval")
        trainer.before_evaluation()

    @property
    def model(self):
        return self.trainer.model

    @property
    def device(self):
        return self.trainer.device

    @torch.no_grad()
    def logits(self, batch):
        """The model's logits [B, C] (float32) for a batch of transformed images, computed as
        the trainer's evaluation computes them."""
        with self.trainer.autocast():
            return self.trainer.model_inference(batch.to(self.device)).float()

    def predict(self, images, batch_size=None):
        """Probabilities for ``images``: a PIL image or image path, a list of them, or a
        tensor batch [B, 3, H, W] already transformed (``self.transform``) as the test loader
        gives it. A file that cannot be read raises ``BadImageError`` naming it."""
        if torch.is_tensor(images):
            batch = images[None] if images.dim() == 3 else images
            return Predictions(self._probs(batch, batch_size), self.classnames)
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        pictures = [x.convert("RGB") if isinstance(x, Image.Image) else read_image(x)
                    for x in images]  # fmt: skip
        ignored = [] if self.cfg.INPUT.EXIF_TRANSPOSE else [
            str(x) if not isinstance(x, Image.Image) else f"image {i}"
            for i, (x, picture) in enumerate(zip(images, pictures))
            if orientation_tag(picture) is not None
        ]  # fmt: skip
        self._tell_ignored(ignored)
        if not pictures:
            return Predictions(torch.zeros(0, len(self.classnames)), self.classnames)
        batch = torch.stack([self.transform(picture) for picture in pictures])
        return Predictions(self._probs(batch, batch_size), self.classnames, None, ignored)

    @staticmethod
    def _tell_ignored(ignored):
        if ignored:
            warnings.warn(orientation_note(ignored), IgnoredOrientation, stacklevel=3)

    def _probs(self, batch, batch_size=None):
        size = batch_size or self.cfg.DATALOADER.TEST.BATCH_SIZE
        return torch.cat([self.logits(part).softmax(1).cpu() for part in batch.split(size)])

    def batches_of_files(self, paths, batch_size=None, progress=False):
        """Image files read and transformed in batches by ``DATALOADER.NUM_WORKERS`` loader
        workers (``progress``: a progress bar on stderr). Yields (the batch's readable
        paths, their images [b, 3, H, W] or None, a list of (path, reason) for the files
        of the batch that could not be read, the paths whose EXIF orientation tag was not
        applied)."""
        paths = [str(p) for p in paths]
        loader = DataLoader(
            ImageFiles(paths, self.transform, self.cfg.INPUT.EXIF_TRANSPOSE),
            batch_size=batch_size or self.cfg.DATALOADER.TEST.BATCH_SIZE,
            num_workers=self.cfg.DATALOADER.NUM_WORKERS,
            collate_fn=_collate_files,
        )
        bar = tqdm(loader, desc="predict", unit="batch", file=sys.stderr, disable=not progress)
        for indices, images, failed, ignored in bar:
            failed = [(paths[i], why) for i, why in failed]
            yield [paths[i] for i in indices], images, failed, [paths[i] for i in ignored]

    def predict_files(self, paths, batch_size=None, progress=False):
        """Probabilities for image files (see ``batches_of_files``). Unreadable files are
        left out: returns the ``Predictions`` of the readable ones (``paths`` in input
        order) and a list of (path, reason) for the others."""
        kept, probs, unreadable, ignored = [], [], [], []
        batches = self.batches_of_files(paths, batch_size, progress)
        for batch_paths, images, failed, tagged in batches:
            unreadable += failed
            ignored += tagged
            if images is not None:
                kept += batch_paths
                probs.append(self._probs(images, batch_size))
        probs = torch.cat(probs) if probs else torch.zeros(0, len(self.classnames))
        self._tell_ignored(ignored)
        return Predictions(probs, self.classnames, kept, ignored), unreadable


def read_classnames_file(path):
    """Class names from a text file, one per line (blank lines ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--classnames file '{path}' does not exist")
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"--classnames file '{path}' holds no class names (one per line)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"--classnames file '{path}' names these classes twice: {duplicates}")
    return names


def load_classifier(run_dir, load_epoch=None, classnames=None, opts=(), rebuild_cfg=None):
    """The model of the run in ``run_dir`` with its trained weights, as a ``Classifier``.

    The config and class names are those the run saved (``config.yaml``,
    ``classnames.json``), with ``opts`` (KEY VALUE pairs, e.g. ``["USE_CUDA", "False"]``)
    applied on top. ``load_epoch``: that epoch's checkpoint instead of the run's best or last
    one (as ``--load-epoch``). ``classnames``: predict over these classes instead (open
    vocabulary; what is tied to the old classes is rebuilt, as for base-to-new evaluation).
    ``rebuild_cfg``: a config built from the training flags, for a run directory that does
    not hold its config; the class names then come from the dataset, as in ``--eval-only``.
    The trainer's messages go to stderr.
    """
    if rebuild_cfg is None:
        cfg, trained_names, template = read_run_inputs(run_dir)
        data = SavedClasses(classnames or trained_names, template)
    else:
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"The run directory '{run_dir}' does not exist")
        cfg, data = rebuild_cfg.clone(), None
    cfg.defrost()
    merge_from_list(cfg, list(opts))
    cfg.TEST.ZEROSHOT_BASELINE = False  # a training-time report, not part of the model
    cfg.freeze()
    with contextlib.redirect_stdout(sys.stderr):
        trainer = ClipTrainer(cfg, method_for(cfg), data=data)
        if data is None:  # the dataset gave the class names and template
            trained_names = trainer.classnames
            if classnames:
                data = SavedClasses(classnames, trainer.template)
                trainer = ClipTrainer(cfg, method_for(cfg), data=data)
        trainer.load_model(run_dir, epoch=load_epoch)  # checks that the classes fit
    return Classifier(trainer)
