"""Batch normalisation over features (N, D) or over channels (N, C, L), (N, C, H, W)."""

from __future__ import annotations

from typing import Any

from .. import _chainer
from .. import init as _init
from .._user import flag, is_real, keyword_hints, warn
from ..backend import fast_path, namespace, same_device, untracked
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .pytorch_params import PyTorchParam


class _ByConvention:
    """BatchNorm's default momentum, which depends on the convention (None is PyTorch's cumulative average)."""

    def __repr__(self) -> str:
        return "0.1 (0.9 with convention='book')"


_BY_CONVENTION = _ByConvention()
_EPS_LIMIT = 0.01  # an eps at least this large is a momentum passed second, in the order xpnet once had


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per feature (N, D) or per channel (N, C, L), (N, C, H, W).

    (N, C, L) is PyTorch's BatchNorm1d of a sequence (a Conv1d's output: torchaudio's M5), per channel over N and L.
    ``train=True`` normalises with the batch mean and (biased) variance over N (and L or H, W) and updates
    the running statistics; ``train=False`` uses them. params: gamma, beta (num_features,).
    buffers: running_mean, running_var (num_features,) in the layer's dtype, saved and moved with
    the model. Caches ``(x, shift)`` whose difference is the centred input (as (N, C, H*W); the
    portable path keeps x - mean itself with no shift, the Numba and CuPy kernels x and the mean),
    1/sqrt(var + eps) and the input shape.

    ``convention="pytorch"`` (the default) is PyTorch's BatchNorm1d/2d: ``momentum`` (default 0.1) is
    the weight of the new batch, ``running = (1 - momentum) * running + momentum * batch``, eps 1e-5,
    running_var starts at 1 and takes the batch's *unbiased* variance (times n/(n-1), n the values per
    channel in the batch; training normalises with the biased one, as PyTorch). ``convention="book"`` is
    the book's BatchNormalization: ``momentum`` (default 0.9) is the weight of the old value, ``running =
    momentum * running + (1 - momentum) * batch``, eps 1e-6 (the book's ``10e-7``), running mean and
    variance start at 0, running_var takes the biased variance (the book's ``np.mean(xc**2)``). A momentum
    above 0.5 under the PyTorch convention (the book's 0.9 typed without ``convention="book"``) warns, as it
    means the opposite there. Normalising with the batch's statistics needs n >= 2 (PyTorch refuses one
    value per channel too).

    The positional arguments are PyTorch's, in its order (``num_features, eps, momentum, affine,
    track_running_stats, device, dtype``); ``convention`` is keyword-only. With PyTorch's meanings:

    - ``affine=False``: no gamma and beta at all (no params, no grads; PyTorch's weight and bias are
      None); y is the normalised x. The kernels get constant ones and zeros, made once per device and dtype.
    - ``track_running_stats=False``: no buffers; training *and evaluation* normalise with the batch's
      statistics (PyTorch's ``bn_training``), so evaluation needs n >= 2 too, and its backward is the
      training one.
    - ``momentum=None``: PyTorch's cumulative average, the batch's weight ``1 / num_batches_tracked``
      after counting the batch. The count is a third buffer, ``num_batches_tracked`` (shape (), in the
      layer's float dtype, where PyTorch's is int64: a model holds one float dtype in its files and
      checkpoints, and ``model.to(dtype=...)`` casts it; float32 counts exactly to 2**24 batches, then
      stays there, weighting each batch 2**-24; float16 stops at 2048 batches, a few epochs: keep such a
      layer in float32). Only this setting has the buffer (PyTorch keeps it for
      every momentum). Not with ``convention="book"``, whose momentum is the weight of the old value.
    - ``device``: refused but at None; make the layer, then move it with ``.to(device)``.

    The running statistics are updated in place (:func:`batchnorm_running`; new arrays only where the
    namespace's arrays are immutable, JAX), so a training step captured as a CUDA graph, which replays its
    kernels on the arrays of the capture, moves them on at every launch; ``num_batches_tracked`` too, and
    the weight 1/n is computed from it on the device. Nothing else in a training forward or backward reads
    a value back to the host or counts in Python.

    In data-parallel training every rank normalises with its own local batch and keeps its own
    running statistics while it trains (not synchronised across ranks); ``xn.train`` ends with rank 0's
    on every rank.
    """

    weight = PyTorchParam("gamma")  # PyTorch's name and layout
    bias = PyTorchParam("beta")  # None when built without one
    running_mean = PyTorchParam("running_mean", store="buffers")  # None without track_running_stats
    running_var = PyTorchParam("running_var", store="buffers")

    @keyword_hints("BatchNorm", _chainer.BATCHNORM)
    def __init__(self, num_features: int, eps: float | None = None, momentum: Any = _BY_CONVENTION,
                 affine: bool = True, track_running_stats: bool = True, device: Any = None, dtype: Any = "float32",
                 *, convention: str = "pytorch"):
        super().__init__()
        self.num_features = positive_int(self, "num_features", num_features)
        if convention not in ("pytorch", "book"):
            raise ValueError(f"BatchNorm: convention must be 'pytorch' or 'book', got {convention!r}")
        book = convention == "book"
        if momentum is None and book:
            raise ValueError("BatchNorm: momentum=None (PyTorch's cumulative average of all batches) is a PyTorch "
                             "setting; with convention='book' momentum is the weight of the old value (the book's "
                             "0.9): pass a number, or leave convention='book' out for momentum=None")
        pytorch_defaults_only(self.name, {"device": DEVICE_DEFAULT}, {"device": device})
        self.affine = flag(affine, self.name, "affine")
        self.track_running_stats = flag(track_running_stats, self.name, "track_running_stats")
        momentum = (0.9 if book else 0.1) if momentum is _BY_CONVENTION else momentum
        eps = (1e-6 if book else 1e-5) if eps is None else eps
        if is_real(eps) and eps >= _EPS_LIMIT:
            raise ValueError(f"BatchNorm: eps={eps!r} is far above PyTorch's 1e-5 (at most {_EPS_LIMIT:g} here): the "
                             "second positional argument is eps, in PyTorch's order: for xpnet's old order (momentum "
                             f"second) pass momentum={eps!r} by keyword, for Chainer's (decay second) "
                             f"momentum={1 - eps:.3g} (1 - decay)")
        if momentum is not None and (not is_real(momentum) or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"BatchNorm: momentum must be a float in [0, 1] or None, got {momentum!r}")
        if not is_real(eps) or not eps > 0.0:
            raise ValueError(f"BatchNorm: eps must be a float > 0, got {eps!r}")
        if not book and momentum is not None and momentum > 0.5:
            warn(f"BatchNorm: momentum={momentum} is PyTorch's weight of the new batch (running = "
                 f"{1 - momentum:.3g} * running + {momentum:.3g} * batch); for the book's momentum={momentum} "
                 f"pass momentum={1 - momentum:.3g} or convention='book'")
        self.momentum = None if momentum is None else float(momentum)
        self.eps, self.convention = float(eps), convention
        self.dtype = _init.dtype_name(dtype, self.name)
        if self.affine:
            self.params["gamma"] = _init.ones((self.num_features,), dtype=dtype)
            self.params["beta"] = _init.zeros((self.num_features,), dtype=dtype)
        if self.track_running_stats:
            self.buffers["running_mean"] = _init.zeros((self.num_features,), dtype=dtype)
            start_var = _init.zeros if book else _init.ones
            self.buffers["running_var"] = start_var((self.num_features,), dtype=dtype)
            if self.momentum is None:
                self.buffers["num_batches_tracked"] = _init.zeros((), dtype=dtype)
        self._unit = None  # affine=False: constant (gamma, beta) = (ones, zeros) on the input's device and dtype
        self._x_shift = None
        self._inv_std = None
        self._shape = None
        self._batch_stats = True

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BatchNorm":
        # Files saved before the conventions existed hold the book's momentum (weight of the old value);
        # files saved before affine and track_running_stats were recorded had both True, the defaults.
        return cls(**config) if "convention" in config else cls(**config, convention="book")

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps,
                "affine": self.affine, "track_running_stats": self.track_running_stats, "dtype": self.dtype,
                "convention": self.convention}

    def forward(self, x: Any, train: bool = True) -> Any:
        x = untracked(x)
        train = self._check_train(train)
        xp = self._check_float(x)
        self._check_like_params(x)
        check_channels(self, x)
        # (N, C, H*W) (or (N, D, 1)): each channel's values lie in contiguous runs, and per-channel
        # vectors broadcast as (1, C, 1); NumPy's reductions over axes (0, 2, 3) of NCHW and its
        # broadcasts against (1, C, 1, 1) are several times slower.
        x3 = xp.reshape(x, (x.shape[0], self.num_features, -1))
        count = x3.shape[0] * x3.shape[2]
        batch_stats = train or not self.track_running_stats
        if batch_stats and count < 2:
            when = "training" if train else "evaluation with track_running_stats=False (the batch's statistics, " \
                                            "as PyTorch)"
            raise ValueError(f"BatchNorm: {when} needs more than one value per feature, got input shape "
                             f"{tuple(x.shape)}; use a larger batch" + (" or train=False" if train else ""))
        stats = None if batch_stats else (self.buffers["running_mean"], self.buffers["running_var"])
        running = None
        if train and self.track_running_stats:
            running = (self.buffers["running_mean"], self.buffers["running_var"], *self._weights(count))
        gamma, beta = self._gamma_beta(x, xp)
        forward = fast_path("batchnorm_forward_running", xp, batchnorm_forward_running)
        y, _, _, self._inv_std, self._x_shift, moved = forward(x3, gamma, beta, self.eps, stats, running)
        if moved is not None:
            self.buffers["running_mean"], self.buffers["running_var"] = moved
        self._shape, self._batch_stats = tuple(x.shape), batch_stats
        return xp.reshape(y, x.shape)

    def backward(self, dy: Any) -> Any:
        dy = untracked(dy)
        x_shift = self._need(self._x_shift)
        xp = self._check_float(dy)
        if tuple(dy.shape) != self._shape:
            raise ValueError(f"BatchNorm: expected dy of shape {self._shape}, got {tuple(dy.shape)}")
        gamma = self.params["gamma"] if self.affine else self._unit[0]
        backward = fast_path("batchnorm_backward", xp, batchnorm_backward)
        grads = self.affine and not self._frozen  # frozen: in evaluation no sums over the batch, dx only
        dx, dgamma, dbeta = backward(xp.reshape(dy, x_shift[0].shape), x_shift, gamma, self._inv_std,
                                     self._batch_stats, grads=grads)
        if grads:
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return xp.reshape(dx, dy.shape)

    def _gamma_beta(self, x: Any, xp: Any) -> tuple[Any, Any]:
        """gamma and beta, or with ``affine=False`` ones and zeros made once for the input's device and dtype."""
        if self.affine:
            return self.params["gamma"], self.params["beta"]
        unit = self._unit
        if unit is None or unit[0].dtype != x.dtype or not same_device(unit[0], x):
            unit = self._unit = (xp.ones((self.num_features,), dtype=x.dtype, device=x.device),
                                 xp.zeros((self.num_features,), dtype=x.dtype, device=x.device))
        return unit

    def _weights(self, count: int) -> tuple[Any, Any, Any]:
        """(old, new, new_var) of :func:`batchnorm_running` for a batch of ``count`` values per channel."""
        if self.momentum is None:
            # PyTorch's cumulative average: 1/n after counting this batch, n counted on the device.
            n = self.buffers["num_batches_tracked"]
            n += 1
            self.buffers["num_batches_tracked"] = n
            m = 1.0 / n
        else:
            m = self.momentum
        if self.convention == "book":
            return m, 1.0 - m, 1.0 - m
        # PyTorch's running_var takes the unbiased variance, the book's the biased one it normalised with.
        return 1.0 - m, m, m * (count / (count - 1))


def check_channels(layer: Layer, x: Any) -> None:
    """Raise unless ``x`` is (N, C), (N, C, L) or (N, C, H, W) with C the layer's ``num_features`` (BatchNorm's
    inputs: PyTorch's BatchNorm1d takes the first two, BatchNorm2d the third; channels second in each)."""
    c = layer.num_features
    if x.ndim not in (2, 3, 4) or x.shape[1] != c:
        hint = ""
        if x.ndim == 3 and x.shape[2] == c:
            hint = ("; a batch-first (N, L, C) sequence has its channels last: permute it to (N, C, L), "
                    "xp.permute_dims(x, (0, 2, 1)), as PyTorch's BatchNorm1d needs too")
        raise ValueError(f"{layer.name}: expected input (N, {c}), (N, {c}, L) or (N, {c}, H, W), got shape "
                         f"{tuple(x.shape)}{hint}")


def batchnorm_forward(x3: Any, gamma: Any, beta: Any, eps: float, stats: Any = None) -> tuple[Any, ...]:
    """The normalisation of x3 (N, C, L) per channel (axis 1), portable.

    ``stats``: (mean, var) to normalise with (evaluation), or None for the batch's own (training).
    Returns y3 (N, C, L), mean and (biased) var (C,), inv_std = 1/sqrt(var + eps) (C,), and what
    backward needs, ``(x, shift)`` with x - shift the centred input (shift None: x is centred
    already; here x - mean itself, kept instead of x_hat: y and the gradients take inv_std into
    their per-channel factors, one pass over the activations fewer each way).
    """
    xp = namespace(x3)
    count = x3.shape[0] * x3.shape[2]
    if stats is None:
        mean = _channel_dot(xp, x3) / count
        xc = x3 - _bcast(xp, mean)
        var = _channel_dot(xp, xc, xc) / count
    else:
        mean, var = stats
        xc = x3 - _bcast(xp, mean)
    inv_std = 1.0 / xp.sqrt(var + eps)
    y = xc * _bcast(xp, gamma * inv_std)
    y += _bcast(xp, beta)
    return y, mean, var, inv_std, (xc, None)


def batchnorm_forward_running(x3: Any, gamma: Any, beta: Any, eps: float, stats: Any = None,
                              running: Any = None) -> tuple[Any, ...]:
    """BatchNorm's forward as one operation, so that a backend may fuse it (CuPy: two launches in training):
    :func:`batchnorm_forward` (or its fast path), then with ``running`` = (running_mean, running_var, old, new,
    new_var), in training, :func:`batchnorm_running` of the batch's statistics (or its fast path). Returns
    batchnorm_forward's five and the running statistics to store back (None without ``running``)."""
    xp = namespace(x3)
    y, mean, var, inv_std, x_shift = fast_path("batchnorm_forward", xp, batchnorm_forward)(x3, gamma, beta, eps, stats)
    moved = None
    if running is not None:
        running_mean, running_var, *weights = running
        moved = fast_path("batchnorm_running", xp, batchnorm_running)(running_mean, running_var, mean, var, *weights)
    return y, mean, var, inv_std, x_shift, moved


def batchnorm_running(running_mean: Any, running_var: Any, mean: Any, var: Any, old: Any,
                      new: Any, new_var: Any) -> tuple[Any, Any]:
    """``running = old * running + new * batch`` for the mean and ``old * running + new_var * batch`` for
    the variance (C,) (``new_var`` takes PyTorch's n/(n-1) in, for the unbiased variance), written into the
    running arrays where the namespace updates in place (:func:`xpnet.backend.update_rule`; new arrays
    on JAX), portable. The weights are Python floats, or 0-d arrays on the running arrays' device and of
    their dtype (``momentum=None``: 1/n from the device's count). Returns both, to be stored back. In
    place, not ``running = old * running + ...``: a CUDA graph replays its kernels on the arrays of the
    capture, and an update into new arrays would read the statistics of before the capture at every launch."""
    running_mean *= old
    running_mean += new * mean
    running_var *= old
    running_var += new_var * var
    return running_mean, running_var


def batchnorm_backward(dy3: Any, x_shift: tuple[Any, Any], gamma: Any, inv_std: Any,
                       train: bool, grads: bool = True) -> tuple[Any, Any, Any]:
    """dx3 (N, C, L), dgamma and dbeta (C,) from dy3 and what :func:`batchnorm_forward` kept, portable.
    With ``train`` the batch statistics depend on every x, and dx takes their share of the gradient:
    dx = scale * (dy - dbeta/count - x_hat * dgamma/count), scale = gamma * inv_std. Without, dx =
    scale * dy, and ``grads=False`` (a frozen layer, or no gamma and beta) skips the two sums: dgamma and
    dbeta None."""
    xp = namespace(dy3)
    scale = gamma * inv_std
    if not train and not grads:
        return dy3 * _bcast(xp, scale), None, None
    x, shift = x_shift
    xc = x if shift is None else x - _bcast(xp, shift)
    dbeta = _channel_dot(xp, dy3)
    dgamma = _channel_dot(xp, dy3, xc) * inv_std
    if not train:
        return dy3 * _bcast(xp, scale), dgamma, dbeta
    count = xc.shape[0] * xc.shape[2]
    dx = xc * _bcast(xp, -scale * inv_std * dgamma / count)
    dx += dy3 * _bcast(xp, scale)
    dx -= _bcast(xp, scale * dbeta / count)
    return dx, dgamma, dbeta


def _bcast(xp: Any, v: Any) -> Any:
    """A per-channel vector (C,) as (1, C, 1), to broadcast against (N, C, L)."""
    return xp.reshape(v, (1, -1, 1))


def _channel_dot(xp: Any, a: Any, b: Any = None) -> Any:
    """Per-channel sum of ``a`` (or of ``a * b``) over axes 0 and 2 of (N, C, L) arrays -> (C,).
    A dot product over the contiguous last axis needs no temporary for the product. CuPy, which has no
    ``vecdot``, runs one reduction kernel instead (``xpnet.backend.fast_cupy.channel_dot``)."""
    fast = fast_path("channel_dot", xp)
    if fast is not None:
        return fast(a, b)
    if b is None:
        return xp.sum(xp.sum(a, axis=2), axis=0)
    return xp.sum(xp.vecdot(a, b, axis=-1), axis=0)
