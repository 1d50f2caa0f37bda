"""File modes that follow the process's umask, for files made through ``tempfile``.

``tempfile.mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders whatever the umask,
so results, checkpoints and generated datasets written through them and renamed into place
would be private where ``open()`` (``log.txt``) gives 0644: colleagues on a shared cluster
could read the log but not the results. ``share_as_umask`` gives them the mode ``open()`` and
``os.makedirs`` would have given.
"""

import os


def current_umask():
    """The umask, read from /proc (Linux) so that it is never changed, even for a moment;
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_as_umask(path):
    """Set ``path`` (a file or folder) to 0666 or 0777 less the umask."""
    full = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, full & ~current_umask())
