"""Training: ``xn.train`` and ``xn.evaluate``, and what a run keeps and writes.

- ``loop``: ``train`` (read its docstring, "How a run goes", first); ``evaluation``: ``evaluate``;
- ``trainer``: the per-epoch work on one device and one rank, and the non-finite guard;
- ``data``: the data checked, moved to the device once, and its targets checked against the loss;
- ``preflight``: the checks made before any step;
- ``history``: the per-epoch figures, saved and plotted;
- ``checkpoint``: full checkpoints, written and read; ``resume``: one put into a run, exactly, or nothing changed;
- ``callbacks``: early stopping, checkpoints and schedules (public as ``xn.callbacks``; ``lr_callback`` and
  ``swa_callback`` wrap a scheduler and an AveragedModel).

It may import everything below it (backend, grad_mode, layers, losses, optim, models, datasets, distributed, io);
only the package face and the command line import it.
"""

from . import callbacks
from .evaluation import evaluate
from .history import History
from .loop import train
from .trainer import TrainerState, XpnetTrainingError

__all__ = ["History", "TrainerState", "XpnetTrainingError", "callbacks", "evaluate", "train"]
