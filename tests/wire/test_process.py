"""`locker_wire.process.limit_malloc_arenas`: a busy thread gets a malloc arena unless limited."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's"
)

# Eight threads allocate at the same time, then glibc's malloc_info reports one <heap> per arena.
COUNT_ARENAS = """
import ctypes, sys, tempfile, threading
from locker_wire.process import limit_malloc_arenas
limited = limit_malloc_arenas() if sys.argv[1] == "limit" else False
start = threading.Barrier(8)
def work():
    start.wait()
    kept = [bytearray(4096) for _ in range(2000)]
    start.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile() as report:
    out = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    heaps = open(report.name).read().count("<heap nr=")
print(limited, heaps)
"""


def arenas(mode: str) -> tuple[str, int]:
    env = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    limited, heaps = done.stdout.split()
    return limited, int(heaps)


def test_the_limit_holds_busy_threads_to_two_arenas() -> None:
    assert arenas("limit") == ("True", 2)


def test_without_the_limit_busy_threads_take_arenas_of_their_own() -> None:
    limited, heaps = arenas("free")
    assert limited == "False"
    assert heaps > 2
