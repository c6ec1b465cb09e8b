"""Give freed heap memory back to the operating system between the stages of long work.

glibc keeps freed memory in its heap for reuse; after training steps or a batch of generation
with tensors of changing shapes that heap is fragmented, and peak RSS (what a laptop feels)
grows with every later stage. ``malloc_trim`` returns the free pages; a no-op without glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
from collections.abc import Iterator

__all__ = ["KERNEL_CACHE_CAPACITY", "limit_kernel_cache", "objects_alive_now_left_out_of_gc", "release_memory",
           "steady_heap", "trim_heap"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536

# oneDNN (torch's CPU matmul library) keeps a compiled kernel, with its buffers, for every
# matmul shape it has seen, up to 1024 of them. Records of varying length give new shapes every
# batch: on a 40-step LoRA run of the starter model the cache held about 0.25 GB by the end
# (peak RSS 2.08 GB, 1.82 GB with a small cache). A step reuses a few dozen shapes.
KERNEL_CACHE_CAPACITY = 64


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


def limit_kernel_cache(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Cap oneDNN's kernel cache (read when torch first multiplies: call before that; a value
    the user set in ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` wins)."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


@contextlib.contextmanager
def objects_alive_now_left_out_of_gc() -> Iterator[None]:
    """While the block runs, the garbage collector skips every object alive when it started.

    A training process holds a few million long-lived objects (torch, transformers, the model's
    modules); a full collection walks them all, about 0.2 s on the starter model, and the HF
    Trainer runs one before its first step (accelerate's ``free_memory``). Frozen, they are
    skipped; objects made inside the block are collected as usual. Afterwards they are
    collectable again (:func:`release_memory` then frees any cycles among them).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def steady_heap() -> Iterator[None]:
    """While the block runs, freed memory stays in the heap for the next training step (glibc).

    Every step allocates and frees the same few hundred activation and gradient buffers. By
    default glibc gives large ones (the logits, tens of MB) to the kernel and back each time
    (``mmap``/``munmap``) and trims the heap's top, so the next step faults the same pages in
    again, zero-filled: 10-60 thousand page faults a step on the starter model, in one process
    ten times as many. Here nothing is mapped separately and the heap is never trimmed on its
    own; :func:`release_memory` after the block gives the free pages back (measured in one
    process, alternating: +1.5% tokens/s, and the slow rounds with many faults gone).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None or not mallopt(_M_MMAP_MAX, 0):
        yield
        return
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        trim_heap()
