"""The fake's memory pools (``cupy/cuda/memory.pyx``): which allocator made each array.

NumPy makes the memory; what the fake keeps is the allocator current when an array was made, so that
a graph launched after an array it writes was freed into the *shared* pool can be refused (on a GPU
the shared pool hands that memory to the next array, which the launch then overwrites).
"""

import contextlib


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
_allocators = [_default_pool.malloc]


def get_allocator():
    return _allocators[-1]


def set_allocator(allocator=None):
    _allocators[-1] = _default_pool.malloc if allocator is None else allocator


@contextlib.contextmanager
def using_allocator(allocator=None):
    _allocators.append(_default_pool.malloc if allocator is None else allocator)
    try:
        yield
    finally:
        _allocators.pop()


def is_shared(allocator):
    """Whether ``allocator`` hands out the default pool's memory, which any later array may get."""
    return getattr(allocator, "__self__", None) is _default_pool


def get_default_memory_pool():
    return _default_pool
