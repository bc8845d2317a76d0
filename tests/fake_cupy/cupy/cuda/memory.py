"""The fake's memory pools (``cupy/cuda/memory.pyx``): which allocator made each array.

NumPy makes the memory; what the fake keeps is the allocator current when an array was made, so that
a graph launched after an array it writes was freed into the *shared* pool can be refused (on a GPU
the shared pool hands that memory to the next array, which the launch then overwrites).

As CuPy's: ``using_allocator`` sets the allocator of the calling thread only, whatever stream is current
(another thread keeps the process-wide one); ``using_allocator(None)`` and ``set_allocator(None)`` mean raw
``cudaMalloc`` with no pool at all, not the default pool; ``set_allocator`` inside a ``using_allocator``
block raises ``ValueError`` (``cupy/cuda/memory.pyx``: ``set_allocator``, ``get_allocator``,
``_thread_local``; ``cupy/cuda/__init__.py``: ``using_allocator``).
"""

import contextlib
import threading


class MemoryPool:
    """``cupy.cuda.MemoryPool()``: ``malloc`` is the allocator to pass to :func:`using_allocator`."""

    def __init__(self, allocator=None):
        self._used = 0

    def malloc(self, size):
        self._used += int(size)
        return self

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._used

    def free_all_blocks(self, stream=None):
        pass

    def n_free_blocks(self):
        return 0


class PinnedMemoryPool(MemoryPool):
    pass


_default_pool = MemoryPool()


def _malloc(size):
    """``cupy.cuda.memory._malloc``: raw ``cudaMalloc``, no pool; freed memory goes back to CUDA at once."""
    return _malloc


_global = [_default_pool.malloc]
_local = threading.local()  # CuPy's using_allocator is thread-local (memory.pyx: _thread_local.allocator)


def get_allocator():
    return getattr(_local, "allocator", None) or _global[0]


def set_allocator(allocator=None):
    """The process-wide allocator; None is raw cudaMalloc (the pool disabled), as CuPy's."""
    if getattr(_local, "allocator", None) is not None:
        raise ValueError("Can't change the global allocator inside `using_allocator` context manager")
    _global[0] = _malloc if allocator is None else allocator


@contextlib.contextmanager
def using_allocator(allocator=None):
    """This thread's allocator inside the block; None is raw cudaMalloc, not the default pool
    (``cupy/cuda/__init__.py``: ``using_allocator``)."""
    previous = getattr(_local, "allocator", None)
    _local.allocator = _malloc if allocator is None else allocator
    try:
        yield
    finally:
        _local.allocator = previous


def is_shared(allocator):
    """Whether memory ``allocator`` made and freed can go to any later array: the default pool's, or raw
    cudaMalloc's (freed back to CUDA, which hands it to the next allocation of any pool)."""
    return allocator is _malloc or getattr(allocator, "__self__", None) is _default_pool


def get_default_memory_pool():
    return _default_pool


_pinned_pool = PinnedMemoryPool()


def get_default_pinned_memory_pool():
    return _pinned_pool
