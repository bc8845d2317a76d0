"""The fake's ``cupy.fft``: NumPy's, results on the current device."""

import numpy.fft as _fft

import cupy as _cupy

__all__ = [n for n in dir(_fft) if n in _cupy._names.FFT and callable(getattr(_fft, n))]
globals().update({n: _cupy._function(n, getattr(_fft, n), _cupy._names.FFT) for n in __all__})
