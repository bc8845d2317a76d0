"""xpnet: neural-network layers written once against the Python array API.

The same ``forward``/``backward`` code runs on NumPy (CPU), CuPy (GPU), PyTorch tensors, JAX arrays or
any array-API namespace whose arrays update in place or through ``.at``.
"""

from . import backend, book, callbacks, datasets, distributed, init, layers, losses, models, optim, testing, training
from .backend import (
    Device,
    XpnetBackendError,
    XpnetDeviceWarning,
    cuda_available,
    device,
    to_device,
    to_numpy,
)
from .book import load_book_params
from .gradcheck import GradcheckReport, gradcheck
from .models import Model, Sequential, XpnetFileError, load, save
from .testing import GradcheckError
from .training import History, XpnetTrainingError, evaluate, train

__version__ = "0.1.0"

__all__ = [
    "Device",
    "GradcheckError",
    "GradcheckReport",
    "History",
    "Model",
    "Sequential",
    "XpnetBackendError",
    "XpnetDeviceWarning",
    "XpnetFileError",
    "XpnetTrainingError",
    "book",
    "callbacks",
    "cuda_available",
    "datasets",
    "device",
    "distributed",
    "evaluate",
    "gradcheck",
    "init",
    "layers",
    "load",
    "load_book_params",
    "losses",
    "optim",
    "save",
    "testing",
    "to_device",
    "to_numpy",
    "train",
]
