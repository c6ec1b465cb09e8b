"""Give freed heap memory back to the operating system between the stages of long work.

glibc keeps freed memory in its heap for reuse; after training steps or a batch of generation
with tensors of changing shapes that heap is fragmented, and peak RSS (what a laptop feels)
grows with every later stage. ``malloc_trim`` returns the free pages; a no-op without glibc.
"""

from __future__ import annotations

import ctypes
import functools
import gc

__all__ = ["release_memory", "trim_heap"]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def trim_heap() -> None:
    """Return the heap's free pages to the OS (milliseconds; cheap between batches)."""
    libc = _libc()
    if libc is not None:
        try:
            libc.malloc_trim(0)
        except AttributeError:  # a libc without malloc_trim (musl)
            pass


def release_memory() -> None:
    """Collect garbage cycles (which may hold tensors), then trim the heap."""
    gc.collect()
    trim_heap()
