"""``xn.callbacks``: early stopping, checkpoints, learning-rate schedules and weight averaging, where users
import them from. They live in :mod:`xpnet.training.callbacks` (and :mod:`xpnet.training.lr_callback`,
:mod:`xpnet.training.swa_callback`), beside the loop that calls them."""

from .training.callbacks import Callback, EarlyStopping, ModelCheckpoint
from .training.lr_callback import LearningRateSchedule, LRScheduler, cosine, step
from .training.swa_callback import AveragedWeights

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateSchedule", "LRScheduler", "AveragedWeights",
           "step", "cosine"]
