"""How many threads NumPy's BLAS uses for the products xpnet runs: chosen by timing, never against the user.

Why: OpenBLAS (NumPy's BLAS) starts one thread per core and splits each matrix product between them.
On a machine whose cores are busy with other work, each split product waits for a thread the
scheduler has not run yet, and an epoch of small products takes 10-50x longer than with one thread
(``benchmarks/thread_load.py`` measures it); on an idle machine the extra thread helps large products.
No fixed count is right for both, so xpnet measures:

1. :func:`blas_threads` (a context manager around ``xn.train``, ``xn.evaluate`` and ``predict``) finds
   NumPy's BLAS through threadpoolctl and decides who chooses. The user does when ``OMP_NUM_THREADS``,
   ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set, or the BLAS runs with another count than it
   started with (``threadpoolctl.threadpool_limits`` around the call): then xpnet changes nothing.
   ``blas_threads=N`` (the argument) or ``XPNET_BLAS_THREADS=N`` fixes the count; ``"auto"`` (the
   default) lets the tuner choose; ``"off"`` leaves the BLAS alone.
2. :class:`ThreadTuner` runs the first steps of each round (an epoch, or an evaluation) alternately with
   1 thread and with the BLAS's own count, times them, and runs the rest of the round with the faster
   (the median of each; at once where one count is twice as fast after one step of each). Each round measures
   again, so a load that comes or goes is followed.
   ``predict`` does not measure (one batch is often all it runs): it runs with the count the last
   measurement chose, or the BLAS's own before any.
3. On leaving, the BLAS gets back the count it had. Only NumPy's BLAS is touched (CuPy, PyTorch and JAX
   manage their own threads), and only while xpnet's call runs.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from typing import Any

__all__ = ["blas_threads", "ThreadTuner", "ENV", "numpy_blas_threads"]

ENV = "XPNET_BLAS_THREADS"
_USER_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_TRIAL_STEPS = 3  # steps timed with each count at the start of a round, at the most
_CLEAR = 2.0  # a count this many times faster than the other after one step of each wins at once

_started_with: dict[str, int] = {}  # BLAS library path -> its thread count when xpnet first saw it
_last_chosen: dict[str, int] = {}  # BLAS library path -> the count the last measurement chose


@functools.cache  # NumPy's BLAS is loaded with NumPy; finding it costs 0.3 ms, too much for each predict
def _numpy_blas() -> tuple[Any, ...]:
    """threadpoolctl's controllers for the BLAS libraries NumPy loaded (empty without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - imported when training starts
    except ImportError:  # pragma: no cover - a dependency of xpnet; a broken install runs as before
        return ()
    return tuple(c for c in ThreadpoolController().lib_controllers if c.user_api == "blas")


@functools.cache
def _own_blas() -> Any:
    """threadpoolctl's controller of NumPy's own BLAS (its wheels keep it in numpy.libs; SciPy's, PyTorch's
    or MKL may be loaded beside it), or None."""
    blas = list(_numpy_blas())
    own = [c for c in blas if "numpy" in os.path.basename(os.path.dirname(c.filepath))]
    return (own or blas or [None])[0]


def numpy_blas_threads() -> int:
    """NumPy's BLAS thread count now: what ``OMP_NUM_THREADS``, threadpoolctl's limits and the tuner set.
    xpnet's other host work on NumPy arrays (MKL's products, the softmax cross-entropy) follows it."""
    own = _own_blas()
    return 1 if own is None else max(1, int(own.get_num_threads() or 1))


def _setting(value: Any) -> str | int:
    """``"auto"``, ``"off"`` or a thread count >= 1, from the argument or else ``XPNET_BLAS_THREADS``."""
    where = "blas_threads"
    if value is None:
        value, where = os.environ.get(ENV, "auto").strip().lower() or "auto", ENV
    if isinstance(value, str) and value in ("auto", "off"):
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be 'auto', 'off' or a thread count >= 1, got {value!r}")
    return value


class ThreadTuner:
    """Sets the BLAS thread count per step: trial steps alternate the candidates, then the fastest runs.

    ``round()`` starts a round of trials (an epoch); ``begin()`` and ``end()`` go around each step (a step
    that raises is not timed). With nothing to choose (one candidate, or no BLAS found) they do nothing.
    """

    def __init__(self, controllers: list[Any], candidates: tuple[int, ...]):
        self.controllers = controllers
        self.candidates = candidates
        self.chosen = candidates[-1]
        self._times: dict[int, list[float]] = {}
        self._trials = 0
        self._warmup = False
        self._n: int | None = None
        self._start = 0.0

    def _set(self, n: int) -> None:
        for c in self.controllers:
            c.set_num_threads(n)

    def round(self) -> None:
        """Measure again from the next step on (the load may have changed). The round's first step runs
        untimed (it pays first-call costs); then up to ``_TRIAL_STEPS`` steps of each count."""
        if len(self.candidates) > 1:
            self._times = {n: [] for n in self.candidates}
            self._trials = _TRIAL_STEPS * len(self.candidates)
            self._warmup = True

    def begin(self) -> None:
        """Before a step: during the trials, set the count this step is timed with."""
        if self._trials and not self._warmup:
            self._n = self.candidates[self._trials % len(self.candidates)]
            self._set(self._n)
            self._start = time.perf_counter()

    def end(self) -> None:
        """After a step: during the trials, record its time; once one count is clearly faster (by
        ``_CLEAR`` after one step of each, the losing count costs one step on a busy machine) or after
        the last trial, run the fastest (by median)."""
        if not self._trials:
            return
        if self._warmup:
            self._warmup = False
            return
        if self._n is None:
            return
        self._times[self._n].append(time.perf_counter() - self._start)
        self._n = None
        self._trials -= 1
        best = [min(t) for t in self._times.values() if t]
        if not self._trials or (len(best) == len(self.candidates) and max(best) >= _CLEAR * min(best)):
            self._trials = 0
            self.chosen = min(self._times, key=lambda k: (statistics.median(self._times[k]), k))
            self._set(self.chosen)
            _last_chosen.update((c.filepath, self.chosen) for c in self.controllers)


class blas_threads:  # noqa: N801 - used as a context manager, like threadpoolctl's threadpool_limits
    """``with blas_threads(setting, device) as tuner:``: while inside, xpnet chooses NumPy's BLAS thread
    count as the module docstring says; ``tuner`` is a :class:`ThreadTuner` (with one candidate where
    there is nothing to choose). ``device``: the :class:`xpnet.Device` the work runs on; only the CPU's
    NumPy uses this BLAS. ``measure=False`` (``predict``): with ``"auto"``, run with the count the last
    measurement chose instead of measuring."""

    def __init__(self, setting: Any = None, device: Any = None, measure: bool = True):
        self.setting = _setting(setting)
        self.device = device
        self.measure = measure
        self._saved: list[tuple[Any, int]] = []

    def __enter__(self) -> ThreadTuner:
        controllers = () if self.setting == "off" or (self.device is not None and not self.device.is_numpy) \
            else _numpy_blas()
        counts = [c.num_threads for c in controllers]
        for c, n in zip(controllers, counts):
            _started_with.setdefault(c.filepath, n)
        user_choice = any(k in os.environ for k in _USER_ENV) or any(
            n != _started_with[c.filepath] for c, n in zip(controllers, counts))
        if not controllers or (user_choice and self.setting == "auto"):
            return ThreadTuner([], (max(counts, default=1),))
        self._saved = list(zip(controllers, counts))
        if self.setting != "auto":
            tuner = ThreadTuner(controllers, (self.setting,))
            tuner._set(self.setting)
            return tuner
        most = max(counts)
        if not self.measure:
            tuner = ThreadTuner(controllers, (min(_last_chosen.get(c.filepath, most) for c in controllers),))
            tuner._set(tuner.chosen)
            return tuner
        return ThreadTuner(controllers, (1, most) if most > 1 else (1,))

    def __exit__(self, *exc: Any) -> None:
        for c, n in self._saved:
            c.set_num_threads(n)
        self._saved = []
