"""xpnet: neural-network layers written once against the Python array API.

The same ``forward``/``backward`` code runs on NumPy (CPU), CuPy (GPU), PyTorch tensors, JAX arrays or
any array-API namespace whose arrays update in place or through ``.at``.
"""

from typing import Any

from . import backend, book, callbacks, datasets, distributed, init, layers, losses, models, optim, testing, training
from ._user import not_here
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
from .grad_mode import no_grad
from .gradcheck import GradcheckReport, gradcheck
from .init import manual_seed
from .models import Model, Sequential, XpnetFileError, load, load_torch_state_dict, save, torch_state_dict
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
    "load_torch_state_dict",
    "losses",
    "manual_seed",
    "no_grad",
    "optim",
    "save",
    "testing",
    "to_device",
    "to_numpy",
    "torch_state_dict",
    "train",
]

# What a PyTorch user reaches for in torch, and what xpnet has instead.
_PYTORCH_NAMES = {
    "nn": "xpnet has no nn module: layers are in xn.layers, losses in xn.losses, the model is xn.Sequential(...)",
    "Tensor": "xpnet has no tensor type of its own: layers take NumPy arrays (or CuPy, PyTorch, JAX arrays); "
              "xn.to_device(x, dev) moves one",
    "tensor": "xpnet has no tensor type of its own: make a NumPy array (numpy.asarray) and move it with "
              "xn.to_device(x, dev)",
    "from_numpy": "layers take NumPy arrays as they are; xn.to_device(x, dev) moves one to a device",
    "cuda": "xn.cuda_available() says whether a GPU can be used; xn.device('cuda') is the device",
    "utils": "batches come from xn.train(..., batch_size=...) or xn.datasets.BatchIterator",
    "Module": "a model of your own subclasses xn.Model (forward and backward written out, the book's way); "
              "xn.Sequential(layer, ...) for a chain of layers",
    "autograd": "xpnet has no autograd: model.backward(criterion.backward()) is loss.backward(), and "
                "xn.gradcheck(model, x, t, loss='cross_entropy') is torch.autograd.gradcheck",
    "functional": "xpnet has no functional API: every operation is a layer object (xn.layers.ReLU(), "
                  "xn.layers.GELU() for F.gelu, xn.layers.Softmax(dim) for F.softmax, "
                  "xn.layers.MultiheadAttention(embed_dim, num_heads) for F.multi_head_attention_forward, "
                  "xn.layers.Attention() for F.scaled_dot_product_attention, xn.layers.Upsample(scale_factor=2) for "
                  "F.interpolate(x, scale_factor=2), xn.losses.SoftmaxCrossEntropy())",
    "Parameter": "a parameter is an array in a layer's params dict: self.params['W'] = ... in a layer or model of "
                 "your own, its gradient in self.grads['W'], filled by your backward",
    "transforms": "xpnet has no transforms: xn.datasets.load_fashion_mnist() already scales to [0, 1] (ToTensor); "
                  "Normalize is (x - mean) / std on the arrays, once; RandomCrop(28, padding=2) with RandomHorizontalFlip "
                  "is xn.train(..., transform=xn.datasets.RandomShiftFlip(max_shift=2)), on training batches only",
    "inference_mode": "xpnet records no graph: xn.no_grad() is accepted; to evaluate, model.predict(x)",
}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, _PYTORCH_NAMES)
