"""The fake's ``cupy.cuda.Device`` and the current device (``cupy/cuda/device.pyx`` of CuPy 13.6 / 14.2)."""

import os

_stack: list[int] = []
_current = [0]


def getDeviceCount() -> int:
    """FAKE_CUPY_DEVICES (1 by default); none visible, ``CUDA_VISIBLE_DEVICES=""`` or ``-1``, fails as CUDA's
    runtime does (what the tests that make CUDA unusable in a child process rely on, on a real GPU too)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    return int(os.environ.get("FAKE_CUPY_DEVICES", "1"))


def getDevice() -> int:
    return _current[0]


def setDevice(device: int) -> None:
    if not 0 <= int(device) < getDeviceCount():
        raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {device}")
    _current[0] = int(device)


class Device:
    """CuPy's Device: compares by id (``__richcmp__``) and, having no ``__hash__``, cannot be hashed;
    ``with Device(n)`` makes GPU n current and restores the previous one on exit."""

    def __init__(self, device=None):
        self.id = getDevice() if device is None else int(device)

    def __int__(self):
        return self.id

    def __enter__(self):
        _stack.append(getDevice())
        if self.id != getDevice():
            setDevice(self.id)
        return self

    def __exit__(self, *args):
        setDevice(_stack.pop())

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    def use(self):
        setDevice(self.id)
        return self

    def synchronize(self):
        from .stream import _refuse, captures_on, waited
        for capture in captures_on(self.id):  # cudaDeviceSynchronize while a stream captures
            _refuse(capture)
        waited()

    def __eq__(self, other):
        return isinstance(other, Device) and self.id == other.id

    def __ne__(self, other):
        return not self == other

    def __lt__(self, other):
        return self.id < other.id if isinstance(other, Device) else NotImplemented
