"""``xn.callbacks``: early stopping, checkpoints and learning-rate schedules, where users import them
from. They live in :mod:`xpnet.training.callbacks`, beside the loop that calls them."""

from .training.callbacks import Callback, EarlyStopping, LearningRateSchedule, ModelCheckpoint, cosine, step

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateSchedule", "step", "cosine"]
