"""Building the dataset and its DataLoaders (Dassl's ``DataManager``)."""

import multiprocessing

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.dataloader import default_collate
from torch.utils.data.distributed import DistributedSampler

from engine import distributed
from engine.data.cache import DecodedImageCache
from engine.data.images import BAD_IMAGE_CHOICES, BadImageError, read_image
from engine.data.transforms import build_transform
from engine.lifetime import EndsWithThisProcess
from engine.randomness import generator, is_keyed, run_seed, seeded, stream_seed
from engine.registry import DATASET_REGISTRY

SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def build_dataset(cfg):
    """The registered dataset ``DATASET.NAME``, built as ``Cls(cfg)`` (import ``datasets``
    first so that it is registered)."""
    print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


class DatasetWrapper(Dataset):
    """Turns ``Datum`` items into Dassl's sample dicts: img, label, domain, impath, index.

    Items are fetched by index, or by ``(epoch, index)`` from an ``EpochKeyedSampler``: then
    the transform's random draws come from the stream ("augment", epoch, index) of
    ``stream_seed``, the same in whichever worker process fetches the item.

    With ``on_bad_image="skip"`` an unreadable image gives ``None`` instead (dropped by
    ``collate_skipping_none``) and a warning with a running count, which DataLoader worker
    processes share through ``num_skipped``. With a ``DecodedImageCache`` the cached images
    skip decoding (and the transform's deterministic start).
    """

    def __init__(self, data_source, transform, on_bad_image="error", cache=None, stream_seed=0):
        if on_bad_image not in BAD_IMAGE_CHOICES:
            raise ValueError(
                f"DATASET.ON_BAD_IMAGE must be one of {', '.join(BAD_IMAGE_CHOICES)}; "
                f"got '{on_bad_image}'"
            )
        self.data_source = data_source
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.cache = cache
        self.stream_seed = stream_seed
        self._skipped = multiprocessing.Value("i", 0)

    @property
    def num_skipped(self):
        return self._skipped.value

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, index = key
            with seeded(self.stream_seed, "augment", epoch, index):
                return self._sample(index)
        return self._sample(key)

    def _sample(self, index):
        item = self.data_source[index]
        cached = None if self.cache is None else self.cache.get(index)
        try:
            img = read_image(item.impath) if cached is None else cached
        except BadImageError as err:
            if self.on_bad_image == "error":
                raise
            with self._skipped.get_lock():
                self._skipped.value += 1
                count = self._skipped.value
            print(
                f"Warning: skipped unreadable image '{item.impath}' ({err.__cause__!r}); "
                f"{count} skipped so far in this split",
                flush=True,  # from a worker process, which may exit without flushing
            )
            return None
        return {
            "img": self.transform(img) if cached is None else self.cache.rest(img),
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": index,
        }


def collate_skipping_none(samples):
    """Default collation of the readable samples; ``None`` when none of them was."""
    samples = [s for s in samples if s is not None]
    return default_collate(samples) if samples else None


class SkippingDataLoader(DataLoader):
    """A DataLoader that leaves out batches in which no image could be read (skip mode)."""

    def __iter__(self):
        return (batch for batch in super().__iter__() if batch is not None)


class EpochKeyedSampler(Sampler):
    """The indices of ``sampler`` as ``(epoch, index)`` keys, so that a sample's augmentation
    can be keyed by both; a ``RandomSampler``'s order comes from the stream ("order", epoch)
    of ``seed``. The trainer calls ``set_epoch`` before each epoch."""

    def __init__(self, sampler, seed):
        self.sampler = sampler
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.epoch = epoch
        if isinstance(self.sampler, RandomSampler):
            self.sampler.generator.manual_seed(stream_seed(self.seed, "order", epoch))
        elif hasattr(self.sampler, "set_epoch"):  # a DistributedSampler
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, index) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)


def build_sampler(cfg, dataset, sampler_type, batch_size, is_train):
    """Dassl's sampler and batch size; in a distributed run, this rank's share instead: a
    ``DistributedSampler`` (shuffled for RandomSampler; the trainer sets its epoch) and the
    batch split over the ranks, so that the batch size stays the global one. With
    RANDOMNESS keyed, a train sampler yields ``EpochKeyedSampler`` keys."""
    keyed = is_train and is_keyed(cfg)
    if not distributed.is_distributed():
        if sampler_type == "RandomSampler" and keyed:
            sampler = RandomSampler(dataset, generator=torch.Generator())
        else:
            sampler = SAMPLERS[sampler_type](dataset)
        return (EpochKeyedSampler(sampler, run_seed(cfg)) if keyed else sampler), batch_size
    world = distributed.world_size()
    if is_train and batch_size % world:
        raise ValueError(
            f"DATALOADER.TRAIN_X.BATCH_SIZE {batch_size} is the global batch of all "
            f"{world} processes and must be a multiple of their number"
        )
    sampler = DistributedSampler(
        dataset,
        world,
        distributed.rank(),
        shuffle=sampler_type == "RandomSampler",
        seed=max(cfg.SEED, 0),
    )
    if keyed:
        sampler = EpochKeyedSampler(sampler, run_seed(cfg))
    return sampler, -(-batch_size // world)


def report_unreadable(errors, on_bad_image):
    """Unreadable train images that the cache found: an error before the first epoch, or in
    skip mode a warning (they are skipped as the loader meets them, as without the cache)."""
    if not errors:
        return
    paths = [err.path for err in errors]
    if on_bad_image == "error":
        more = f" ({len(paths) - 1} more unreadable train images: {paths[1:]})"
        more = more if errors[1:] else ""
        raise BadImageError(f"{errors[0]}{more}", errors[0].path) from errors[0]
    print(f"Warning: {len(paths)} unreadable train image(s) will be skipped in every epoch "
          f"(DATASET.ON_BAD_IMAGE skip): {paths}")  # fmt: skip


def build_data_loader(cfg, data_source, batch_size, tfm, is_train, sampler_type):
    """A loader as Dassl builds it: drop_last only for training and only when the data fill
    a batch. Pinned memory (with CUDA), persistent workers and, for training, the decoded
    image cache as the DATALOADER keys say. Workers end with the process that made them.
    With RANDOMNESS keyed nothing here draws from the global generators."""
    if sampler_type not in SAMPLERS:
        raise ValueError(f"Unknown sampler '{sampler_type}'; valid: {', '.join(SAMPLERS)}")
    loaders = cfg.DATALOADER
    num_workers = loaders.NUM_WORKERS
    cache = None
    if is_train and loaders.CACHE_IMAGES_MB > 0:
        cache = DecodedImageCache(data_source, tfm, loaders.CACHE_IMAGES_MB, num_workers)
    dataset = DatasetWrapper(data_source, tfm, cfg.DATASET.ON_BAD_IMAGE, cache, run_seed(cfg))
    if cache is not None:
        report_unreadable(cache.unreadable, cfg.DATASET.ON_BAD_IMAGE)
    sampler, batch_size = build_sampler(cfg, dataset, sampler_type, batch_size, is_train)
    return SkippingDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skipping_none,
        drop_last=is_train and len(sampler) >= batch_size,
        pin_memory=loaders.PIN_MEMORY and torch.cuda.is_available() and cfg.USE_CUDA,
        persistent_workers=loaders.PERSISTENT_WORKERS and num_workers > 0,
        worker_init_fn=EndsWithThisProcess(),
        # the workers' base seed, drawn when an iteration starts: from the loader's own stream
        generator=generator(run_seed(cfg), "loader") if is_keyed(cfg) else None,
    )


class DataManager:
    """The dataset, its transforms and loaders: train_loader_x, val_loader (``None`` without a
    val split) and test_loader. Batches are dicts with "img" (float), "label" (long),
    "domain", "impath" and "index"."""

    def __init__(self, cfg, dataset=None, tfm_train=None, tfm_test=None):
        self.dataset = build_dataset(cfg) if dataset is None else dataset
        if tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        if tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        for split in ("train_x", "test"):
            if not getattr(self.dataset, split):
                raise ValueError(f"Dataset {cfg.DATASET.NAME} has an empty {split} split")
        loaders = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg,
            self.dataset.train_x,
            loaders.TRAIN_X.BATCH_SIZE,
            tfm_train,
            is_train=True,
            sampler_type=loaders.TRAIN_X.SAMPLER,
        )
        self.val_loader = None
        if self.dataset.val:
            self.val_loader = build_data_loader(
                cfg,
                self.dataset.val,
                loaders.TEST.BATCH_SIZE,
                tfm_test,
                is_train=False,
                sampler_type=loaders.TEST.SAMPLER,
            )
        self.test_loader = build_data_loader(
            cfg,
            self.dataset.test,
            loaders.TEST.BATCH_SIZE,
            tfm_test,
            is_train=False,
            sampler_type=loaders.TEST.SAMPLER,
        )
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self):
        return self.dataset.num_classes

    @property
    def lab2cname(self):
        return self.dataset.lab2cname

    @property
    def classnames(self):
        return self.dataset.classnames

    def show_dataset_summary(self, cfg):
        table = [
            ["Dataset", cfg.DATASET.NAME or type(self.dataset).__name__],
            ["# classes", f"{self.num_classes:,}"],
            ["# train_x", f"{len(self.dataset.train_x):,}"],
        ]
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
