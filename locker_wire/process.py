"""Process settings central and the node both make at start, before their first thread.

glibc gives each new thread that allocates an arena of its own, up to eight per core, and what is
freed in one arena is never reused by another. Central serves from a dozen threads (the event
loop, the database threads, the scheduler's pool, the notice senders) and a node from several
(the kiosk's event loop and its thread pool, sync, the door monitor, housekeeping): each thread's
arena kept its own free space. Limited to two, in a 12-minute soak without chaos (`bench/soak.py
--chaos 0`, the same seed both ways), central peaked at 190.7 MB instead of 200.5 and grew
+3.8 MB/h after warm-up instead of +9.8; nodes at 96.0 instead of 97.0-98.0 MB. Python's small
objects come from its own allocator, not malloc's arenas, and contention on two arenas does not
show at either process's request rates.
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameter for the most arenas (malloc.h); a fresh process reads the same limit
# from the MALLOC_ARENA_MAX environment variable.
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most `arenas` malloc arenas in this process and the processes it starts, unless the
    operator's environment already sets MALLOC_ARENA_MAX. Call it before the first thread; True
    when the limit is in force, False where malloc is not glibc's (musl, macOS).
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(M_ARENA_MAX, arenas) != 1:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # for the worker processes
    return True
