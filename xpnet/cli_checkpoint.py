"""The command line's checkpoint: ``xpnet train`` keeps one in --out, and ``--resume`` continues from it.

1. After each epoch the run writes a full checkpoint, ``<out>/checkpoint.npz`` (``ModelCheckpoint(full=True)``,
   atomic): weights, optimizer state, history, Dropout generators. SIGTERM stops at the end of a step and
   writes the last complete epoch there (xn.train's own handler); Ctrl-C leaves the one of the last epoch.
   Under ``--distributed`` the ranks agree to stop at the end of an epoch only, and SIGTERM waits for it
   ``XPNET_SIGTERM_WAIT_S`` seconds at most (:mod:`xpnet.io.signals`): a job ended mid-epoch says nothing
   and leaves the file of the epoch before, which ``--resume`` continues all the same.
2. On either, the run says what the file holds and the command that continues it (the same one with
   ``--resume``); the run then goes on exactly as an uninterrupted one (``xn.train``'s ``resume_from``).
3. A run that finishes writes model.npz, history.json and curves.png and removes the checkpoint, so a
   checkpoint in --out always means an interrupted run: a new run there without ``--resume`` is refused
   rather than let it overwrite what was saved.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from .cli import UsageError
from .training.callbacks import ModelCheckpoint

__all__ = ["CHECKPOINT", "RunCheckpoint", "check_resume"]

CHECKPOINT = "checkpoint.npz"
_OUTPUTS = ("model.npz", "history.json", "curves.png")


def check_resume(out: str, resume: bool) -> None:
    """Raise a UsageError where --resume has no checkpoint to continue, or where a new run would
    overwrite the checkpoint of an interrupted one."""
    path = os.path.join(out, CHECKPOINT)
    if resume and not os.path.isfile(path):
        if os.path.isfile(os.path.join(out, "model.npz")):
            raise UsageError(f"--resume: the run in {out!r} finished (its model.npz is there) and a finished run "
                             f"keeps no {CHECKPOINT}: --resume continues interrupted runs only; to train that model "
                             f"further, load it in Python (xn.load({os.path.join(out, 'model.npz')!r})) and call "
                             "xn.train; a new run (more --epochs, another --out) trains a new model from the start")
        raise UsageError(f"--resume: there is no {path} to continue (a run writes it after each epoch and removes "
                         "it when it finishes); leave --resume out to start a new run")
    if not resume and os.path.exists(path):
        raise UsageError(f"--out {out!r} holds {CHECKPOINT} of an interrupted run: add --resume to continue it, or "
                         "remove the file (or choose another --out) to start a new run")


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(<out>/checkpoint.npz, full=True)`` that knows the epoch its file holds and, when
    the run is interrupted, says so with the command to resume."""

    def __init__(self, out: str, argv: list[str], comm: Any = None):
        super().__init__(os.path.join(out, CHECKPOINT), monitor="train_loss", full=True)
        self.out, self.comm = out, comm
        self.resume_command = shlex.join([*([] if comm is None else ["mpiexec", "-n", str(comm.size)]),
                                          "python", "-m", "xpnet", *argv, *([] if "--resume" in argv else
                                                                            ["--resume"])])
        self.epoch_saved = 0
        self.epochs = 0
        self.earlier = [name for name in _OUTPUTS if os.path.exists(os.path.join(out, name))]

    def on_train_begin(self, state: Any) -> None:
        super().on_train_begin(state)
        self.epoch_saved, self.epochs = state.epoch, state.epochs  # a resumed run starts from its file

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        super().on_epoch_end(epoch, logs)
        self.epoch_saved = epoch

    def save_last(self) -> None:
        """On SIGTERM: the last complete epoch written (none before the first has ended), then said,
        before the process ends."""
        if self.state.epoch > 0:
            super().save_last()
            self.epoch_saved = self.state.epoch
        self.tell("SIGTERM")

    def tell(self, why: str) -> None:
        """Print (rank 0) what the interrupted run left in --out and how to continue it."""
        if self.comm is not None and self.comm.rank != 0:
            return
        if self.epoch_saved == 0:
            lines = [f"xpnet: {why}: interrupted before the first epoch ended; nothing was saved"]
        else:
            lines = [f"xpnet: {why}: {self.path} holds the run after epoch {self.epoch_saved} of {self.epochs} "
                     "(weights, optimizer state, history)",
                     f"xpnet: continue it with: {self.resume_command}"]
        if self.earlier:
            lines.append(f"xpnet: {', '.join(self.earlier)} in {self.out} are still those of an earlier run")
        print("\n".join(lines), file=sys.stderr, flush=True)
