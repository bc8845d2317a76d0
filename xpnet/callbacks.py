"""``xn.callbacks``: early stopping, checkpoints and learning-rate schedules, where users import them
from. They live in :mod:`xpnet.training.callbacks` (and :mod:`xpnet.training.lr_callback`), beside the loop
that calls them."""

from .training.callbacks import Callback, EarlyStopping, LearningRateSchedule, ModelCheckpoint, cosine, step
from .training.lr_callback import LRScheduler

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateSchedule", "LRScheduler", "step", "cosine"]
