"""How the command-line programs end on bad input: ``error: <what to do>`` on stderr and exit
status 2, instead of a traceback."""

import sys
import traceback

from engine.checkpoint import RunWriteError
from engine.data.images import BadImageError
from engine.run_lock import RunDirInUse

# Errors that bad input or a bad state of the files causes: their message says what to do.
BAD_INPUT = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
    KeyError,
    ValueError,
    FloatingPointError,
    BadImageError,
    RunDirInUse,
    RunWriteError,
)


def exit_status(main, bad_input=BAD_INPUT):
    """Run ``main()``: its status when it returns an int (else 0), or 2 after printing the
    message of a ``bad_input`` error and where it was raised (which helps if it is a bug)."""
    try:
        status = main()
    except bad_input as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        origin = traceback.extract_tb(err.__traceback__)[-1]
        print(f"error: {message}", file=sys.stderr)
        print(f"(raised at {origin.filename}:{origin.lineno})", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0
