"""The Transformer's encoder block and stack: PyTorch's nn.TransformerEncoderLayer and nn.TransformerEncoder."""

from __future__ import annotations

import copy
import math
from typing import Any

from .. import init as _init
from .._user import flag, is_real
from ..backend import float_dtype_name, untracked
from .activations import GELU, ReLU
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .attention_layout import check_tables
from .container import Container
from .dropout import Dropout
from .layernorm import LayerNorm
from .linear import Linear
from .multihead_attention import MultiheadAttention

__all__ = ["TransformerBlock", "TransformerEncoderLayer", "TransformerEncoder"]

_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


def _time_first(xp: Any, x: Any, batch_first: bool) -> Any:
    """(L, N, E) <-> (N, L, E) where the layer is time first; x itself otherwise."""
    return x if batch_first else xp.permute_dims(x, (1, 0, 2))


class TransformerBlock(Container):
    """What PyTorch's encoder and decoder layers share: their arguments (checked here), the feed-forward block
    ``linear2(dropout(activation(linear1(x))))`` with PyTorch's initialisation, LayerNorm's eps, the layout.
    Subclasses build their children in PyTorch's order with :meth:`_feed_forward_layers` and :meth:`_norm`."""

    def _arguments(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, activation: Any,
                   layer_norm_eps: float, batch_first: bool, norm_first: bool, bias: bool, device: Any,
                   dtype: Any) -> str:
        """Check and keep the arguments; returns the dtype's name."""
        who = type(self).__name__
        self.d_model = positive_int(self, "d_model", d_model)
        self.nhead = positive_int(self, "nhead", nhead)
        self.dim_feedforward = positive_int(self, "dim_feedforward", dim_feedforward)
        if isinstance(dropout, bool) or not is_real(dropout) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{who}: dropout must be a float in [0, 1), got {dropout!r}")
        if not is_real(layer_norm_eps) or isinstance(layer_norm_eps, bool) or not layer_norm_eps > 0.0:
            raise ValueError(f"{who}: layer_norm_eps must be a float > 0, got {layer_norm_eps!r}")
        self.batch_first = flag(batch_first, who, "batch_first")
        self.norm_first, self.bias = flag(norm_first, who, "norm_first"), flag(bias, who, "bias")
        pytorch_defaults_only(who, {"device": DEVICE_DEFAULT}, {"device": device})
        self.p, self.layer_norm_eps = float(dropout), float(layer_norm_eps)
        self.activation_name = _activation_name(who, activation)
        self._shape: tuple[int, ...] | None = None
        return _init.dtype_name(dtype, who)

    def _feed_forward_layers(self, dtype: str) -> tuple[Linear, Dropout, Linear]:
        """linear1, dropout, linear2, drawn as PyTorch's (W then b of each, U(+-1/sqrt(fan_in)))."""
        return (_pytorch_linear(self.d_model, self.dim_feedforward, self.bias, dtype), Dropout(self.p),
                _pytorch_linear(self.dim_feedforward, self.d_model, self.bias, dtype))

    def _norm(self, dtype: str) -> LayerNorm:
        return LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias, dtype=dtype)

    @staticmethod
    def _activation_layer(activation: Any) -> Layer:
        """The layer for ``activation``: "relu" and "gelu" built, an xpnet layer as it is."""
        return _ACTIVATIONS[activation]() if isinstance(activation, str) else activation

    def config(self) -> dict[str, Any]:
        return {"d_model": self.d_model, "nhead": self.nhead, "dim_feedforward": self.dim_feedforward,
                "dropout": self.p, "activation": self.activation_name or self.activation,
                "layer_norm_eps": self.layer_norm_eps, "batch_first": self.batch_first, "norm_first": self.norm_first,
                "bias": self.bias, "dtype": float_dtype_name(self.dtype, self.name)}

    def _sequence(self, x: Any, what: str) -> tuple[Any, Any]:
        """(namespace, x as (N, L, d_model)) after checking its shape in the layer's layout."""
        xp = self._check_float(x)
        if x.ndim != 3 or x.shape[2] != self.d_model:
            layout = "(N, L, E)" if self.batch_first else "(L, N, E) (batch_first=False)"
            raise ValueError(f"{self.name}: expected {what} of shape {layout} with E = d_model = {self.d_model}, "
                             f"got {tuple(x.shape)}")
        if self.batch_first:
            check_tables(self)
        return xp, _time_first(xp, x, self.batch_first)

    def _gradient(self, dy: Any) -> tuple[Any, Any]:
        """(namespace, dy as (N, L, d_model)) after checking it has the last output's shape."""
        xp = self._check_float(dy)
        if tuple(dy.shape) != self._need(self._shape):
            raise ValueError(f"{self.name}: expected dy of shape {self._shape} (the last forward's output), got "
                             f"{tuple(dy.shape)}")
        return xp, _time_first(xp, dy, self.batch_first)

    def _feed_forward(self, x: Any, out: Dropout, train: bool) -> Any:
        h = self.linear1.forward(x, train=train)
        h = self.dropout.forward(self.activation.forward(h, train=train), train=train)
        return out.forward(self.linear2.forward(h, train=train), train=train)

    def _feed_forward_backward(self, dy: Any, out: Dropout) -> Any:
        dh = self.dropout.backward(self.linear2.backward(out.backward(dy)))
        return self.linear1.backward(self.activation.backward(dh))


class TransformerEncoderLayer(TransformerBlock):
    """One encoder block of "Attention Is All You Need", PyTorch's ``nn.TransformerEncoderLayer``:
    self-attention and a feed-forward network ``linear2(dropout(activation(linear1(x))))``, each with
    dropout and a skip connection, each followed by LayerNorm (``norm_first=False``, the paper's) or
    preceded by it (``norm_first=True``).

    src (N, L, d_model) -> (N, L, d_model). **Batch first by default** (``batch_first=True``), as every
    xpnet layer; PyTorch's default is time first, (L, N, E): pass ``batch_first=False`` for that layout.
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: the masks are
    MultiheadAttention's ``attn_mask`` (L, L) or (N * nhead, L, L) and ``key_padding_mask`` (N, L), boolean
    (True: not attended) or float (added); ``is_causal=True`` without ``src_mask`` masks the later
    positions (PyTorch takes it as a hint about ``src_mask`` and wants the mask too).
    backward(dy (N, L, d_model)) -> dsrc, the three uses of src by the attention and the skip added.
    Children as PyTorch's, so ``xn.load_torch_state_dict`` takes its state dict: ``self_attn``
    (MultiheadAttention), ``linear1``, ``dropout``, ``linear2``, ``norm1``, ``norm2``, ``dropout1``,
    ``dropout2``, ``activation`` ("relu", "gelu" or an xpnet activation layer such as
    ``GELU(approximate="tanh")``). PyTorch's initialisation: the attention's, and U(+-1/sqrt(fan_in)) for
    both Linear layers' weights and biases, from xpnet's seed. Caches nothing itself (its children do).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = True,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = "float32"):
        super().__init__()
        dtype = self._arguments(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                                norm_first, bias, device, dtype)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=self.p, bias=self.bias, dtype=dtype)
        self.linear1, self.dropout, self.linear2 = self._feed_forward_layers(dtype)
        self.norm1, self.norm2 = self._norm(dtype), self._norm(dtype)
        self.dropout1, self.dropout2 = Dropout(self.p), Dropout(self.p)
        self.activation = self._activation_layer(activation)

    def forward(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,  # type: ignore[override]
                is_causal: bool = False, train: bool = True) -> Any:
        src = untracked(src)
        train = self._check_train(train, "src, src_mask, src_key_padding_mask, is_causal")
        xp, x = self._sequence(src, "src")
        self._shape = tuple(src.shape)
        masks = {"attn_mask": src_mask, "key_padding_mask": src_key_padding_mask, "is_causal": is_causal}
        if self.norm_first:
            x = x + self._attention(self.norm1.forward(x, train=train), masks, train)
            x = x + self._feed_forward(self.norm2.forward(x, train=train), self.dropout2, train)
        else:
            x = self.norm1.forward(x + self._attention(x, masks, train), train=train)
            x = self.norm2.forward(x + self._feed_forward(x, self.dropout2, train), train=train)
        return _time_first(xp, x, self.batch_first)

    def backward(self, dy: Any) -> Any:
        """Post-norm: dv = norm2's backward of dy, dx1 = dv + the feed-forward's dx of dv, du = norm1's of
        dx1, dsrc = du + dq + dk + dv of the attention's backward of du. Pre-norm: the skips carry dy past
        each block, whose dx goes through its LayerNorm and is added."""
        xp, d = self._gradient(untracked(dy))
        if self.norm_first:
            d = d + self.norm2.backward(self._feed_forward_backward(d, self.dropout2))
            d = d + self.norm1.backward(self._attention_backward(d))
        else:
            d = self.norm2.backward(d)
            d = self.norm1.backward(d + self._feed_forward_backward(d, self.dropout2))
            d = d + self._attention_backward(d)
        return _time_first(xp, d, self.batch_first)

    def _attention(self, x: Any, masks: dict[str, Any], train: bool) -> Any:
        y = self.self_attn.forward(x, x, x, need_weights=False, train=train, **masks)[0]
        return self.dropout1.forward(y, train=train)

    def _attention_backward(self, dy: Any) -> Any:
        return self.self_attn.backward_self(self.dropout1.backward(dy))


class TransformerEncoder(Container):
    """``num_layers`` copies of ``encoder_layer`` one after another, then ``norm`` (a LayerNorm, or None):
    PyTorch's ``nn.TransformerEncoder``. As PyTorch's, every copy starts with the given layer's weights
    (``copy.deepcopy``); the layer given is not one of them. Children ``layers.0`` ... and ``norm``, as
    PyTorch's state dict names them.

    src (N, L, d_model) -> (N, L, d_model) (time first where the layer is ``batch_first=False``);
    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=False)`` passes the masks to every
    layer. backward(dy) -> dsrc. Caches nothing itself.
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Layer | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        self.layers = _copies(self, encoder_layer, TransformerEncoderLayer, num_layers)
        self.num_layers = len(self.layers)
        self.norm = _optional_norm(self, norm)
        # PyTorch's switches of its own fast paths: either value means the same here.
        flag(enable_nested_tensor, self.name, "enable_nested_tensor")
        flag(mask_check, self.name, "mask_check")

    def config(self) -> dict[str, Any]:
        return {"encoder_layer": self.layers[0], "num_layers": self.num_layers, "norm": self.norm}

    def forward(self, src: Any, mask: Any = None, src_key_padding_mask: Any = None,  # type: ignore[override]
                is_causal: bool = False, train: bool = True) -> Any:
        train = self._check_train(train, "src, mask, src_key_padding_mask, is_causal")
        x = src
        for layer in self.layers:
            x = layer.forward(x, mask, src_key_padding_mask, is_causal, train=train)
        return x if self.norm is None else self.norm.forward(x, train=train)

    def backward(self, dy: Any) -> Any:
        d = dy if self.norm is None else self.norm.backward(dy)
        for layer in reversed(self.layers):
            d = layer.backward(d)
        return d


def _activation_name(who: str, activation: Any) -> str | None:
    """"relu" or "gelu" (PyTorch's names), None for an xpnet activation layer; anything else refused."""
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{who}: activation must be 'relu', 'gelu' or an xpnet activation layer "
                             f"(xn.layers.GELU(approximate='tanh'), ...), got {activation!r}")
        return activation
    if isinstance(activation, Layer) and not activation.params:
        return None
    # A function's module, or an object's class's (an instance reads its class's __module__).
    hint = ("; for PyTorch's F.relu / F.gelu pass 'relu' / 'gelu'"
            if (getattr(activation, "__module__", None) or "").startswith("torch") else "")
    raise TypeError(f"{who}: activation must be 'relu', 'gelu' or an xpnet activation layer without parameters "
                    f"(xn.layers.GELU(approximate='tanh'), ...), got {type(activation).__name__}{hint}")


def _copies(owner: Container, layer: Any, kind: type, num_layers: int) -> list[Any]:
    """``num_layers`` deep copies of ``layer`` (PyTorch's _get_clones), after checking both."""
    if not isinstance(layer, kind):
        raise TypeError(f"{owner.name}: expected an xn.layers.{kind.__name__} to copy, got {type(layer).__name__}")
    return [copy.deepcopy(layer) for _ in range(positive_int(owner, "num_layers", num_layers))]


def _optional_norm(owner: Container, norm: Any) -> Layer | None:
    if norm is not None and not isinstance(norm, Layer):
        raise TypeError(f"{owner.name}: norm must be an xpnet layer (xn.layers.LayerNorm(d_model)) or None, got "
                        f"{type(norm).__name__}")
    return norm


def _pytorch_linear(fan_in: int, fan_out: int, bias: bool, dtype: str) -> Linear:
    """A Linear drawn as PyTorch's nn.Linear: W and b from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), W first."""
    bound = 1.0 / math.sqrt(fan_in)
    layer = Linear(fan_in, fan_out, init=lambda shape, rng: rng.uniform(-bound, bound, shape), bias=bias,
                   dtype=dtype)
    if bias:
        layer.params["b"] = _init.uniform((fan_out,), bound, dtype)
    return layer
