"""``History``: what ``xn.train`` returns, one record per epoch, and its plot."""

from __future__ import annotations

import math
import os
from typing import Any, Iterable

from .._user import install_hint, not_here, warn
from ..io.atomic import atomic_write
from ..io.paths import fspath
from ..optim.lr_scheduler.base import group_lrs

__all__ = ["History", "format_logs", "lr_figures", "warn_if_diverged"]

_DIVERGED_FACTOR = 10.0  # warn_if_diverged: a last loss this many times the first

# What a Keras user reaches for on the History, and where xpnet keeps it.
_KERAS_NAMES = {
    "history": "xpnet's History holds one dict per epoch in .epochs; Keras' history.history['val_loss'] is "
               "[e['val_loss'] for e in history.epochs] (keys: epoch, train_loss, train_accuracy, val_loss, "
               "val_accuracy, seconds, lr; lrs with several param groups)",
    "loss_list": "the book's trainer.loss_list (a loss every eval_interval steps) is [e['train_loss'] for e in "
                 "history.epochs] here, one per epoch",
    "ppl_list": "the book's trainer.ppl_list is [e['train_perplexity'] for e in history.epochs] here, one per epoch",
}


class History:
    """What ``xn.train`` returns: one dict per epoch and the device's name.

    ``epochs[i]`` has ``epoch`` (1-based), ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy`` (None where not measured), ``seconds`` and ``lr`` (:func:`lr_figures`: the first param
    group's, and with several groups ``lrs``, each group's); for a sequence model trained
    with cross-entropy or NLLLoss also ``train_perplexity`` and ``val_perplexity`` (exp of the mean negative
    log-likelihood per counted token: of the mean losses, but without class weights or label smoothing).
    The losses are means over every target of the data (``val_loss``) or of the epoch's batches as the
    weights moved (``train_loss``): each batch weighs by the count its loss's mean is over (labels that are
    not ``ignore_index``; its rows for a loss that does not say), so they do not depend on ``batch_size``.
    """

    def __init__(self, device: str = "", epochs: Iterable[dict[str, Any]] = ()):
        self.device = device
        self.epochs: list[dict[str, Any]] = [dict(e) for e in epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def __getattr__(self, name: str) -> Any:
        raise not_here("History", name, _KERAS_NAMES, kind="object")

    def __repr__(self) -> str:
        last = f", last={self.epochs[-1]}" if self.epochs else ""
        return f"History(device={self.device!r}, epochs={len(self.epochs)}{last})"

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "epochs": [dict(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(d.get("device", ""), d.get("epochs", ()))

    def plot(self, path: str | os.PathLike, title: str | None = None) -> None:
        """Write loss and accuracy curves (train and validation) to ``path`` (PNG), atomically;
        ``title`` (e.g. the dataset and model) goes above both panels."""
        path = fspath(path, "History.plot")
        fig = self.figure(title)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png")

    def figure(self, title: str | None = None) -> Any:
        """The matplotlib Figure that :meth:`plot` writes: loss and accuracy per epoch, whole-epoch
        ticks, one curve per split found in the records (``train_*``, ``val_*``, ``test_*``)."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - optional
            from matplotlib.figure import Figure  # noqa: PLC0415
            from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(f"History.plot needs matplotlib: {install_hint('plot')}") from exc
        if not self.epochs:
            raise ValueError("History.plot: nothing to plot, the history has no epochs")
        fig = Figure(figsize=(10, 4))
        FigureCanvasAgg(fig)
        x = [e["epoch"] for e in self.epochs]
        for ax, what in zip(fig.subplots(1, 2), ("loss", "accuracy")):
            for split in ("train", "val", "test"):
                ys = [e.get(f"{split}_{what}") for e in self.epochs]
                if any(v is not None for v in ys):
                    ax.plot(x, [math.nan if v is None else v for v in ys], marker="o", label=split)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.set_title(f"{what} on {self.device}")
            if ax.has_data():
                ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig


def format_logs(logs: dict[str, Any], validation_name: str = "val") -> str:
    """The epoch's figures; the val_* ones are printed under ``validation_name`` (e.g. test_loss)."""
    parts = [f"{k.replace('val_', validation_name + '_', 1)} {logs[k]:.4f}"
             for k in ("train_loss", "train_accuracy", "train_perplexity", "val_loss", "val_accuracy",
                       "val_perplexity") if logs.get(k) is not None]
    return "  ".join(parts) + f"  ({logs['seconds']:.3g}s)"


def lr_figures(optimizer: Any) -> dict[str, Any]:
    """An epoch log's ``lr``: the optimizer's, which is its first param group's; with several groups also
    ``lrs``, each group's in order (they may differ, and ``lr`` alone would hide all but the first)."""
    figures: dict[str, Any] = {"lr": float(optimizer.lr)}
    lrs = group_lrs(optimizer)
    if len(lrs) > 1:
        figures["lrs"] = [float(lr) for lr in lrs]
    return figures


def warn_if_diverged(history: History, first: float | None) -> None:
    """Warn when the last epoch's training loss is far above the loss of the run's first step (over every
    rank's part of it, as the epoch's): a learning rate too large can diverge to a finite loss (SGD(1e3)
    ended at 307) without the NaN guard ever seeing a non-finite value."""
    if first is None or not history.epochs or history.epochs[-1].get("train_loss") is None:
        return
    last = history.epochs[-1]["train_loss"]
    if math.isfinite(first) and first > 0 and last > _DIVERGED_FACTOR * first:
        warn(f"train: the training loss ended at {last:.4g} (epoch {history.epochs[-1]['epoch']}), far above where "
             f"this run began ({first:.4g} at its first step): training diverged; try a smaller learning rate")
