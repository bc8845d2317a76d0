"""``xn.Model``: a model of your own, the book's way (layers as attributes, forward and backward
written out), with what every model has: ``predict``, ``summary``, ``save``, modes, state dicts."""

from __future__ import annotations

from typing import Any

from .._user import is_int
from ..backend import CPU, Device, namespace, no_autograd, plain_array, to_device, untracked
from ..backend.threads import blas_threads as blas_threads_context
from ..layers.base import build_from_arguments
from ..layers.container import Container, mode, no_train
from ..layers.embedding_bag import uncut_bags_hint
from ..layers.evaluation_look import looked
from ..layers.recurrent_state import independent_batches, refuse_time_first
from .inputs import check_fits, is_ids, to_model_dtype, warn_unscaled
from .summary import summary as _summary

__all__ = ["Model", "is_ids", "to_model_dtype"]  # the input helpers live in .inputs


class Model(Container):
    """Subclass it: assign layers (and models, or lists and dicts of them) as attributes in
    ``__init__`` after ``super().__init__()``, then write ``forward(x, train=True)`` (or
    ``forward(x1, x2, train=True)``) and ``backward(dy)``, which returns dx (a tuple for several
    inputs) and adds the gradients of a value used twice by hand, as the book does::

        class Block(xn.Model):
            def __init__(self, c):
                super().__init__()
                self.conv, self.bn, self.relu = Conv2d(c, c, 3, padding=1), BatchNorm(c), ReLU()
            def forward(self, x, train=True):
                return self.relu.forward(self.bn.forward(self.conv.forward(x, train), train) + x, train)
            def backward(self, dy):
                dh = self.relu.backward(dy)
                return self.conv.backward(self.bn.backward(dh)) + dh   # the skip's share added

    ``model(x)`` runs ``forward`` in the model's mode: training until ``model.eval()``, again after
    ``model.train()``; ``forward(x, train=...)`` says it explicitly. ``predict`` and ``xn.evaluate``
    run in evaluation mode and ``xn.train`` in training mode, each leaving the mode it found.
    One layer object per use: a layer keeps what its backward needs from its last forward only.

    ``save`` (or ``xn.save(model, path)``) records the class by module and name, and the arguments
    the model was built with (numbers, strings, lists, dicts, layers); ``xn.load`` builds it again
    with them, when this program has defined the class.
    """

    def forward(self, *xs: Any, train: bool = True) -> Any:
        raise NotImplementedError(f"{self.name}.forward is not written: a model of your own writes "
                                  "forward(x, train=True) and backward(dy)")

    def backward(self, dy: Any) -> Any:
        raise NotImplementedError(f"{self.name}.backward is not written: write backward(dy) returning dx (the "
                                  "layers' backward in reverse order), or build the model from xn.Sequential, "
                                  "xn.layers.Residual and Concat, which have theirs")

    @property
    def device(self) -> Device:
        """The device holding the parameters and buffers (the CPU for a model without any)."""
        dev = super().device
        return CPU if dev is None else dev

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Model":
        """The model built again from the arguments ``config()`` gave (by default those it was built with)."""
        return build_from_arguments(cls, config)

    def summary(self, input_shape: Any = None) -> str:
        """A table of the layers by name, their output shapes and parameter counts, and the total.

        ``input_shape`` is the shape of one sample, without N (e.g. ``(1, 28, 28)``; a list of them for
        a model with several inputs; ``(T,)`` integer ids where the first layer is an Embedding); it may
        be left out when the first layer of a Sequential is a Linear. Without it the table has no output
        shapes. The shapes come from a forward pass in evaluation mode of two zero samples through a copy
        of the model: its caches stay as they were.
        """
        return _summary(self, input_shape)

    def predict(self, *xs: Any, batch_size: int | None = None, blas_threads: Any = None) -> Any:
        """Forward in evaluation mode on the model's device; returns an array on that device. No
        buffer changes (BatchNorm's running statistics), whatever the model's mode.

        Each row is a sequence of its own for stateful recurrent layers (``LSTM(stateful=True)``, as in
        ``xn.models.LanguageModel``): every batch starts them from zeros, whatever ``batch_size``, and
        the state they carried before the call is theirs again after it, so the same input gives the
        same output each time (to continue a carried state, call ``forward``).

        Each input (any backend; an ``np.memmap`` too) is moved to the model's device and cast to its
        dtype one batch at a time, uint8 images scaled by 1/255 as ``xn.train`` and ``xn.evaluate`` do
        (integer ids stay integers where the model takes ids: ``takes_ids``; other integers are cast, with
        ``xn.train``'s warning where they look like unscaled 0..255 images);
        ``batch_size`` bounds memory for large inputs (every input is cut alike along axis 0, the samples:
        a model with a time-first recurrent layer, ``batch_first=False``, is refused where that would cut
        it; one call without ``batch_size`` runs it). ``blas_threads`` as in
        ``xn.train``, except that ``"auto"`` runs with the count the last training or evaluation chose
        (``xpnet.backend.threads``).

        After a training forward whose backward has not run (``y = model(x)``, ``model.predict(x2)``, then
        ``model.backward(dy)``) predict leaves the model as it was, so the backward serves ``x``; otherwise a
        backward after it serves predict's batch (a saliency map: ``model.predict(x)``, ``model.backward(dy)``).
        """
        if not xs:
            raise TypeError(f"{self.name}.predict: expected the input x (or x1, x2, ... for several inputs)")
        if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
            raise ValueError(f"predict: batch_size must be None or an int >= 1, got {batch_size!r}")
        if no_train(self):
            raise TypeError(f"predict: {no_train(self)}")
        dev = self.device
        threads = blas_threads_context(blas_threads, dev, measure=False)
        with dev.activate(), threads:  # a model on cuda:N runs on GPU N (Device.activate)
            moved = []
            for x in xs:
                x = plain_array(untracked(x), "predict: x") if hasattr(x, "shape") else to_device(x, dev)
                if not namespace(x).isdtype(x.dtype, ("real floating", "integral")):
                    raise TypeError(f"predict: x must hold real numbers, got dtype {x.dtype}")
                if x.ndim < 1:
                    raise ValueError(f"predict: x must have a sample axis (N, ...), got shape {tuple(x.shape)}")
                moved.append(x)
            # Numbers (not ids) are cast as xn.train casts them: integers with its warning for raw images,
            # values past the model's dtype refused.
            numbers = {"predict: x" if len(moved) == 1 else f"predict: x{i + 1}": x for i, x in enumerate(moved)
                       if not is_ids(self, x)}
            warn_unscaled({k: x for k, x in numbers.items() if namespace(x).isdtype(x.dtype, "integral")})
            for k, x in numbers.items():
                check_fits(x, dev, self.dtype, k)
            n = int(moved[0].shape[0])
            if any(int(x.shape[0]) != n for x in moved):
                raise ValueError(f"predict: the inputs hold {[int(x.shape[0]) for x in moved]} samples; they must "
                                 "match" + uncut_bags_hint(moved))
            size = max(1, n if batch_size is None else batch_size)
            if size < n:
                refuse_time_first(self, f"{self.name}.predict(batch_size={batch_size})")
            from .ids import ids_checked_once  # noqa: PLC0415 - it imports the models built on this one

            outs = []
            with looked(self), mode(self, False), no_autograd(dev.xp), ids_checked_once(self, [tuple(moved)]), \
                    independent_batches(self) as fresh:
                for i in range(0, max(n, 1), size):
                    fresh()
                    outs.append(self.forward(*(to_device(x[i:min(i + size, n), ...], dev) if is_ids(self, x)
                                               else to_model_dtype(x[i:min(i + size, n), ...], dev, self.dtype)
                                               for x in moved), train=False))
            return outs[0] if len(outs) == 1 else dev.xp.concat(outs, axis=0)

    def save(self, path: Any) -> None:
        """Write architecture, params and buffers to ``path`` (.npz) atomically: a temporary file in the
        same folder, then a rename, so an interrupted save never leaves a broken file. Reload with
        ``xn.load(path, device=...)``. A binary file object (``io.BytesIO``) is written at its position,
        not atomically, as ``xn.save(model, f)``."""
        from .files import save_model  # noqa: PLC0415 - files builds models: it sits above this module

        save_model(self, path)
