"""xpnet: neural-network layers written once against the Python array API.

The same ``forward``/``backward`` code runs on NumPy (CPU), CuPy (GPU), PyTorch tensors, JAX arrays or
any array-API namespace whose arrays update in place or through ``.at``.
"""

from typing import Any

from . import backend, book, callbacks, datasets, distributed, init, layers, losses, models, optim, testing, training
from ._chainer import MODULE as _CHAINER_NAMES
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
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import GradcheckReport, gradcheck
from .init import manual_seed
from .layers.frozen_norm import freeze_batch_norm, unfreeze_batch_norm
from .optim import load_torch_optimizer_state_dict, torch_optimizer_state_dict
from .models import (Model, Sequential, XpnetFileError, load, load_chainer_npz, load_torch_state_dict,
                     read_torch_file, save, torch_state_dict)
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
    "backend",
    "book",
    "callbacks",
    "cuda_available",
    "datasets",
    "device",
    "distributed",
    "enable_grad",
    "evaluate",
    "freeze_batch_norm",
    "gradcheck",
    "init",
    "is_grad_enabled",
    "layers",
    "load",
    "load_book_params",
    "load_chainer_npz",
    "load_torch_optimizer_state_dict",
    "load_torch_state_dict",
    "losses",
    "manual_seed",
    "models",
    "no_grad",
    "optim",
    "read_torch_file",
    "save",
    "set_grad_enabled",
    "testing",
    "to_device",
    "to_numpy",
    "torch_optimizer_state_dict",
    "torch_state_dict",
    "train",
    "unfreeze_batch_norm",
]

_RANDOM = ("xpnet draws no arrays of its own: draw on the host, rng = numpy.random.default_rng(seed), "
           "z = rng.standard_normal((64, 20), dtype=numpy.float32) (DCGAN's noise, a VAE's eps), then "
           "xn.to_device(z, dev)")
_ARRAYS = ("xpnet has no array functions: use the namespace of the arrays, xp = xn.backend.namespace(x) (NumPy's, "
           "CuPy's... as the array API names them: xp.concat([a, b], axis=1) for torch.cat, xp.reshape(x, (n, -1)) "
           "for torch.flatten(x, 1)); in a model, an operation with a backward is a layer (xn.layers.Flatten())")
_ACTIVATIONS = ("in a model an activation is a layer, its backward called in yours: torch.sigmoid(x) is "
                "xn.layers.Sigmoid(), torch.tanh xn.layers.Tanh(), torch.relu xn.layers.ReLU(), torch.softmax(x, dim) "
                "xn.layers.Softmax(dim), torch.log_softmax xn.layers.LogSoftmax(dim); on arrays alone, the namespace's "
                "xp.tanh, xp.exp with xp = xn.backend.namespace(x)")
# What a PyTorch user reaches for in torch, and what xpnet has instead.
_PYTORCH_NAMES = {
    "nn": "xpnet has no nn module: layers are in xn.layers, losses in xn.losses, the model is xn.Sequential(...)",
    "Tensor": "xpnet has no tensor type of its own: layers take NumPy arrays (or CuPy, PyTorch, JAX arrays); "
              "xn.to_device(x, dev) moves one",
    "tensor": "xpnet has no tensor type of its own: make a NumPy array (numpy.asarray) and move it with "
              "xn.to_device(x, dev)",
    "from_numpy": "layers take NumPy arrays as they are; xn.to_device(x, dev) moves one to a device",
    "cuda": "xn.cuda_available() says whether a GPU can be used; xn.device('cuda') is the device (Chainer's "
            "cuda.to_gpu(x) is xn.to_device(x, 'cuda'), to_cpu(x) xn.to_numpy(x), get_array_module(x) "
            "xn.backend.namespace(x))",
    "utils": "batches come from xn.train(..., batch_size=...) or xn.datasets.BatchIterator; nn.utils."
             "clip_grad_norm_(model.parameters(), max_norm) is xn.optim.clip_grad_norm(model, max_norm); "
             "nn.utils.rnn's pack_padded_sequence, pad_packed_sequence and pad_sequence are "
             "xn.layers.pack_padded_sequence(x, lengths), xn.layers.pad_packed_sequence(out) and "
             "xn.layers.pad_sequence(sequences); nn.utils.parameters_to_vector(model.parameters()) is "
             "xp.concat([xp.reshape(p, (-1,)) for p in model.parameters()]) with xp = xn.backend.namespace(p), in "
             "xpnet's layouts (a Linear's W is PyTorch's weight.T), and vector_to_parameters(vec, ...) writes each "
             "slice back, p[...] = xp.reshape(vec[i:i + p.size], p.shape)",
    "clip_grad_norm_": optim._PYTORCH_NAMES["clip_grad_norm_"],
    "clip_grad_value_": optim._PYTORCH_NAMES["clip_grad_value_"],
    "DataParallel": layers._PARALLEL,
    "DistributedDataParallel": layers._PARALLEL,
    "Module": "a model of your own subclasses xn.Model (forward and backward written out, the book's way); "
              "xn.Sequential(layer, ...) for a chain of layers",
    "autograd": "xpnet has no autograd: model.backward(criterion.backward()) is loss.backward(), and "
                "xn.gradcheck(model, x, t, loss='cross_entropy') is torch.autograd.gradcheck; a "
                "torch.autograd.Function (forward(ctx, input), backward(ctx, grad_output)) is a layer of your own, "
                "class P3(xn.layers.Layer) with forward(self, input, train=True) keeping what backward needs "
                "(self.input = input for ctx.save_for_backward) and backward(self, grad_output) returning the "
                "input's gradient; call P3() where the Function's .apply was, its backward in your model's",
    "functional": "xpnet has no functional API: every operation is a layer object (xn.layers.ReLU(), "
                  "xn.layers.GELU() for F.gelu, xn.layers.Softmax(dim) for F.softmax, "
                  "xn.layers.MultiheadAttention(embed_dim, num_heads) for F.multi_head_attention_forward, "
                  "xn.layers.ScaledDotProductAttention(dropout=dropout_p, scale=scale, enable_gqa=enable_gqa) for "
                  "F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=...) (its boolean attn_mask True: "
                  "attended, as F's) (xn.layers.Attention() is the book's att(hs_enc, hs_dec): not scaled, keys as "
                  "values, no mask), "
                  "xn.layers.Upsample(scale_factor=2, mode='bilinear') for F.interpolate(x, scale_factor=2, "
                  "mode='bilinear'), xn.losses.SoftmaxCrossEntropy(); xn.layers.AffineGrid() and "
                  "xn.layers.GridSample() for F.affine_grid(theta, x.shape) and F.grid_sample(x, grid))",
    "Parameter": "a parameter is an array in a layer's params dict: self.params['W'] = ... in a layer or model of "
                 "your own, its gradient in self.grads['W'], filled by your backward",
    "transforms": "xpnet has no transforms: xn.datasets.load_fashion_mnist() already scales to [0, 1] (ToTensor); "
                  "Normalize is (x - mean) / std on the arrays, once; RandomCrop(28, padding=2) with "
                  "RandomHorizontalFlip is xn.train(..., transform=xn.datasets.RandomShiftFlip(max_shift=2)), on "
                  "training batches only",
    "inference_mode": "xpnet records no graph: xn.no_grad() is accepted; to evaluate, model.predict(x)",
    **dict.fromkeys(("set_default_device", "get_default_device"),
                    "xpnet has no default device: layers are built on the host; build the model, then move it, "
                    "model.to(xn.device('cuda')), and its inputs, xn.to_device(x, dev) (XPNET_DEVICE=cpu turns "
                    "'cuda' and 'auto' into the CPU for a whole script)"),
    "set_default_dtype": "xpnet has no default dtype: layers are built in float32; model.to(dtype='float64') casts "
                         "a model (inputs keep their own dtype: cast them to the model's)",
    "accelerator": "xn.cuda_available() is torch.accelerator.is_available(); xn.device('auto') is "
                   "current_accelerator() (the GPU where one is usable, else the CPU), model.to(dev) moves a model",
    **dict.fromkeys(("randn", "randn_like", "rand", "randint", "randperm", "multinomial"), _RANDOM),
    **dict.fromkeys(("cat", "stack", "zeros", "ones", "full", "arange", "exp", "flatten", "tril", "triu", "max",
                     "min", "argmax", "sum", "mean", "log", "sqrt", "sin", "cos", "where", "matmul", "bmm",
                     "zeros_like", "ones_like", "topk", "linspace", "pow"), _ARRAYS),
    **dict.fromkeys(("sigmoid", "tanh", "relu", "softmax", "log_softmax"), _ACTIVATIONS),
}


_TO_DEVICE = "no GPU flag (the book's common/config.py): xn.train(..., device='cuda') runs on a GPU, "
_CLIP = "xn.optim.clip_grad_norm(model, max_norm) is the book's clip_grads(grads, max_norm), or xn.train(..., " \
        "clip_grad_norm=max_grad)"
# What a reader of the book's second volume reaches for in its common/ and dataset/ folders.
_BOOK_NAMES = {
    "Trainer": "the book's Trainer(model, optimizer).fit(x, t, max_epoch, batch_size, max_grad) is xn.train(model, "
               "(x, t), loss='cross_entropy', optimizer=optimizer, epochs=max_epoch, batch_size=batch_size, "
               "clip_grad_norm=max_grad); docs/from-the-book.md maps the rest",
    "RnnlmTrainer": "the book's RnnlmTrainer(model, optimizer).fit(xs, ts, max_epoch, batch_size, time_size, "
                    "max_grad) is xn.train(model, xn.datasets.TokenStream(corpus, batch_size, time_size), "
                    "loss='cross_entropy', optimizer=optimizer, epochs=max_epoch, clip_grad_norm=max_grad)",
    "eval_perplexity": "the book's eval_perplexity(model, corpus) is xn.evaluate(model, xn.datasets.TokenStream("
                       "corpus, 10, 35), loss='cross_entropy')['perplexity'] (batch_size 10, time_size 35, the "
                       "book's defaults)",
    "eval_seq2seq": "model.exact_match(x_test, t_test) is the book's eval_seq2seq summed over a test set, as a share; "
                    "model.generate(xs, start_id, length) answers a whole batch",
    "clip_grads": _CLIP,
    "to_gpu": "xn.to_device(x, 'cuda') moves an array, model.to('cuda') a model; " + _TO_DEVICE
              + "no array needs moving by hand",
    "to_cpu": "xn.to_numpy(x) is a NumPy array from any device; model.to('cpu') moves a model",
    "config": _TO_DEVICE + "model.to('cuda') moves a model",
    "GPU": _TO_DEVICE + "model.to('cuda') moves a model",
}

# chainer.config (the train flag) and the book's common/config.py (the GPU flag) are both "config".
_BOTH_CONFIGS = f"{_CHAINER_NAMES['config']}; {_BOOK_NAMES['config']}"


def _in_a_subpackage(name: str) -> dict[str, str]:
    """The hint for torch.nn's ``nn.Linear`` written ``xn.Linear`` (``import torch.nn as nn`` is ``import xpnet as
    xn``): where xpnet keeps ``name``, its layers, losses or optimizers, or what those say of a name they lack
    (``xn.ModuleList``, ``xn.CrossEntropyLoss``)."""
    for module, where in ((layers, "xn.layers"), (losses, "xn.losses"), (optim, "xn.optim")):
        if name in module.__all__:
            return {name: f"it is {where}.{name}: layers are in xn.layers, losses in xn.losses, optimizers in "
                          f"xn.optim (PyTorch's nn.Linear is xn.layers.Linear)"}
    for module, where in ((layers, "xn.layers"), (losses, "xn.losses")):
        hint = module._PYTORCH_NAMES.get(name)
        if hint is not None:
            return {name: f"xpnet has no {name}: {hint}"}
    return {}


def __getattr__(name: str) -> Any:
    raise not_here(__name__, name, {**_in_a_subpackage(name), **_CHAINER_NAMES, **_PYTORCH_NAMES, **_BOOK_NAMES,
                                    "config": _BOTH_CONFIGS})
