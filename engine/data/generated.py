"""Files a dataset generates for itself (a missing split file, few-shot subsets): kept in the
dataset's folder, or, where that folder cannot be written (a copy a cluster shares
read-only), below ``DATASET.SPLIT_CACHE`` at the folder's own path, and read back from there.

``<cache>/<absolute path of the file>``: e.g. ``/data/caltech-101/split_fewshot/
shot_1-seed_1.json`` becomes ``~/.cache/dpt/splits/data/caltech-101/split_fewshot/
shot_1-seed_1.json``, so that datasets never meet in the cache.
"""

import errno
import os

from engine.checkpoint import saving

# The dataset's folder refuses writes: a read-only mount, no permission, an immutable folder.
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def cached_path(path, cache_root):
    """Where ``path`` is kept below ``cache_root`` when its own folder cannot be written."""
    root = os.path.abspath(os.path.expanduser(cache_root))
    return os.path.join(root, os.path.abspath(path).lstrip(os.sep))


def find_generated(path, cache_root):
    """``path`` if it exists, else its copy in the cache if that exists, else None."""
    if os.path.exists(path):
        return path
    if cache_root and os.path.exists(cached_path(path, cache_root)):
        return cached_path(path, cache_root)
    return None


def save_generated(path, write, cache_root, what):
    """``write(target)`` to ``path`` or, when its folder refuses writes, to its place in the
    cache (the log says where); a failed write (a full disk) is a ``RunWriteError`` naming
    ``what``. Returns the path written."""
    with saving(f"{what} '{path}'"):
        try:
            write(path)
            return path
        except OSError as err:
            if not cache_root or err.errno not in READ_ONLY_ERRNOS:
                raise
            target = cached_path(path, cache_root)
            print(
                f"Cannot write {what} into the dataset's folder ({err.strerror}): saving it to "
                f"{target} instead (DATASET.SPLIT_CACHE), where later runs read it"
            )
    with saving(f"{what} '{target}' (DATASET.SPLIT_CACHE)"):
        write(target)
    return target
