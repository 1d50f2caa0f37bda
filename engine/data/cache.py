"""Decoded train images kept in memory, so that decoding does not repeat every epoch.

Only the deterministic start of the transform is cached: the decoded image, and a leading
``ExifTranspose``, ``Resize`` or ``CenterCrop`` when the pipeline begins with them. The random
augmentations after it still run on every access, so a cached loader yields exactly what an
uncached one yields for the same seed. Images are decoded once, in threads, before the
loader's worker processes start (forked workers share the memory); items past the memory
budget, and unreadable ones, stay on disk and take the uncached path. The unreadable ones are
listed in ``unreadable``, so that a run can stop (or warn) before its first epoch.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import torchvision.transforms as T

from engine.data.images import BadImageError, read_image
from engine.data.transforms import ExifTranspose

DETERMINISTIC_OPS = (ExifTranspose, T.Resize, T.CenterCrop)


def split_deterministic_prefix(transform):
    """(the leading deterministic ops, the rest) of a ``T.Compose`` (``None`` when empty)."""
    ops = list(transform.transforms) if isinstance(transform, T.Compose) else [transform]
    n_fixed = 0
    while n_fixed < len(ops) and isinstance(ops[n_fixed], DETERMINISTIC_OPS):
        n_fixed += 1
    prefix = T.Compose(ops[:n_fixed]) if n_fixed else None
    return prefix, T.Compose(ops[n_fixed:])


class DecodedImageCache:
    """``get(index)``: the image after ``transform``'s deterministic start, or None when not
    cached; ``rest`` is the remainder of ``transform`` to apply to it."""

    def __init__(self, data_source, transform, budget_mb, num_threads=1):
        self.prefix, self.rest = split_deterministic_prefix(transform)
        self._images = {}
        self.unreadable = []  # a BadImageError per unreadable image decoded, in order
        budget = budget_mb * 2**20
        used = 0
        start = time.time()
        for index, image in self._decode(data_source, num_threads):
            size = image.width * image.height * len(image.getbands())
            if used + size > budget:
                break
            self._images[index] = image
            used += size
        print(
            f"Cached {len(self._images):,} of {len(data_source):,} decoded train images "
            f"({used / 2**20:.0f} MiB, DATALOADER.CACHE_IMAGES_MB {budget_mb}) "
            f"in {time.time() - start:.1f}s"
        )

    def _decode(self, data_source, num_threads):
        """(index, image) of the readable items in order, decoded in threads a chunk at a
        time (so that nothing far past the budget is decoded); errors go to ``unreadable``."""
        chunk = 8 * max(1, num_threads)
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            for first in range(0, len(data_source), chunk):
                images = pool.map(self._load, data_source[first : first + chunk])
                for index, image in enumerate(images, start=first):
                    if isinstance(image, BadImageError):
                        self.unreadable.append(image)
                    else:
                        yield index, image

    def _load(self, item):
        """The image after the prefix, or the BadImageError (on access the item is read
        again, which reports it as without the cache)."""
        try:
            image = read_image(item.impath)
        except BadImageError as err:
            return err
        return image if self.prefix is None else self.prefix(image)

    def __len__(self):
        return len(self._images)

    def get(self, index):
        return self._images.get(index)
