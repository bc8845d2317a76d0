"""The Transformer's decoder block and stack, and the whole encoder-decoder: PyTorch's nn.TransformerDecoderLayer,
nn.TransformerDecoder and nn.Transformer."""

from __future__ import annotations

import math
from typing import Any

from .. import init as _init
from .._user import is_int
from ..backend import CPU, to_device, untracked
from .base import Layer
from .container import Container
from .dropout import Dropout
from .multihead_attention import MultiheadAttention
from .transformer import (TransformerBlock, TransformerEncoder, TransformerEncoderLayer, _copies, _optional_norm,
                          _time_first)

__all__ = ["TransformerDecoderLayer", "TransformerDecoder", "Transformer"]

_DECODER_MASKS = "tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, " \
                 "memory_is_causal"


class TransformerDecoderLayer(TransformerBlock):
    """One decoder block, PyTorch's ``nn.TransformerDecoderLayer``: self-attention over the target, attention of
    the target over the encoder's output (``memory``) and the feed-forward network, each with dropout and a skip
    connection, each followed by LayerNorm (``norm_first=False``) or preceded by it (``norm_first=True``).

    tgt (N, T, d_model), memory (N, S, d_model) -> (N, T, d_model); **batch first by default**, PyTorch's
    (T, N, E) layout with ``batch_first=False``. ``forward(tgt, memory, tgt_mask=None, memory_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``:
    MultiheadAttention's masks for each attention (``tgt_is_causal=True`` alone masks the later target positions).
    backward(dy) -> (dtgt, dmemory): the memory's gradient is the cross-attention's key and value gradients added.
    Children as PyTorch's (``self_attn``, ``multihead_attn``, ``linear1``, ``dropout``, ``linear2``, ``norm1``,
    ``norm2``, ``norm3``, ``dropout1``-``dropout3``, ``activation``) with its initialisation. Caches nothing itself.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Any = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = True,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = "float32"):
        super().__init__()
        dtype = self._arguments(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                                norm_first, bias, device, dtype)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=self.p, bias=self.bias, dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=self.p, bias=self.bias, dtype=dtype)
        self.linear1, self.dropout, self.linear2 = self._feed_forward_layers(dtype)
        self.norm1, self.norm2, self.norm3 = self._norm(dtype), self._norm(dtype), self._norm(dtype)
        self.dropout1, self.dropout2, self.dropout3 = Dropout(self.p), Dropout(self.p), Dropout(self.p)
        self.activation = self._activation_layer(activation)

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,  # type: ignore[override]
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, train: bool = True) -> Any:
        tgt, memory = untracked(tgt), untracked(memory)
        train = self._check_train(train, _DECODER_MASKS)
        xp, x = self._sequence(tgt, "tgt")
        mem = self._sequence(memory, "memory")[1]
        if mem.shape[0] != x.shape[0]:
            raise ValueError(f"{self.name}: tgt and memory must hold the same number of sequences, got "
                             f"{tuple(tgt.shape)} and {tuple(memory.shape)}")
        self._shape = tuple(tgt.shape)
        own = {"attn_mask": tgt_mask, "key_padding_mask": tgt_key_padding_mask, "is_causal": tgt_is_causal}
        cross = {"attn_mask": memory_mask, "key_padding_mask": memory_key_padding_mask, "is_causal": memory_is_causal}
        if self.norm_first:
            x = x + self._self_attention(self.norm1.forward(x, train=train), own, train)
            x = x + self._cross_attention(self.norm2.forward(x, train=train), mem, cross, train)
            x = x + self._feed_forward(self.norm3.forward(x, train=train), self.dropout3, train)
        else:
            x = self.norm1.forward(x + self._self_attention(x, own, train), train=train)
            x = self.norm2.forward(x + self._cross_attention(x, mem, cross, train), train=train)
            x = self.norm3.forward(x + self._feed_forward(x, self.dropout3, train), train=train)
        return _time_first(xp, x, self.batch_first)

    def backward(self, dy: Any) -> tuple[Any, Any]:
        """Each block's backward in reverse: through its LayerNorm after it (post-norm) or before it (pre-norm),
        the skip's gradient added; the cross-attention's dquery goes on to the target, its dkey + dvalue is
        dmemory."""
        xp, d = self._gradient(untracked(dy))
        if self.norm_first:
            d = d + self.norm3.backward(self._feed_forward_backward(d, self.dropout3))
            dq, dmem = self._cross_attention_backward(d)
            d = d + self.norm2.backward(dq)
            d = d + self.norm1.backward(self._self_attention_backward(d))
        else:
            d = self.norm3.backward(d)
            d = self.norm2.backward(d + self._feed_forward_backward(d, self.dropout3))
            dq, dmem = self._cross_attention_backward(d)
            d = self.norm1.backward(d + dq)
            d = d + self._self_attention_backward(d)
        return _time_first(xp, d, self.batch_first), _time_first(xp, dmem, self.batch_first)

    def _self_attention(self, x: Any, masks: dict[str, Any], train: bool) -> Any:
        y = self.self_attn.forward(x, x, x, need_weights=False, train=train, **masks)[0]
        return self.dropout1.forward(y, train=train)

    def _self_attention_backward(self, dy: Any) -> Any:
        return self.self_attn.backward_self(self.dropout1.backward(dy))

    def _cross_attention(self, x: Any, memory: Any, masks: dict[str, Any], train: bool) -> Any:
        y = self.multihead_attn.forward(x, memory, memory, need_weights=False, train=train, **masks)[0]
        return self.dropout2.forward(y, train=train)

    def _cross_attention_backward(self, dy: Any) -> tuple[Any, Any]:
        dq, dk, dv = self.multihead_attn.backward(self.dropout2.backward(dy))
        return dq, dk + dv


class TransformerDecoder(Container):
    """``num_layers`` copies of ``decoder_layer``, each attending over the same memory, then ``norm`` (or None):
    PyTorch's ``nn.TransformerDecoder``. Every copy starts with the given layer's weights (``copy.deepcopy``),
    as PyTorch's. forward(tgt, memory, <the layer's masks>) -> (N, T, d_model); backward(dy) -> (dtgt, dmemory),
    the memory's gradient summed over the layers. Caches nothing itself.
    """

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Layer | None = None):
        super().__init__()
        self.layers = _copies(self, decoder_layer, TransformerDecoderLayer, num_layers)
        self.num_layers = len(self.layers)
        self.norm = _optional_norm(self, norm)

    def config(self) -> dict[str, Any]:
        return {"decoder_layer": self.layers[0], "num_layers": self.num_layers, "norm": self.norm}

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,  # type: ignore[override]
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, train: bool = True) -> Any:
        train = self._check_train(train, _DECODER_MASKS)
        x = tgt
        for layer in self.layers:
            x = layer.forward(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                              tgt_is_causal, memory_is_causal, train=train)
        return x if self.norm is None else self.norm.forward(x, train=train)

    def backward(self, dy: Any) -> tuple[Any, Any]:
        d = dy if self.norm is None else self.norm.backward(dy)
        dmemory = None
        for layer in reversed(self.layers):
            d, dm = layer.backward(d)
            dmemory = dm if dmemory is None else dmemory + dm
        return d, dmemory


class Transformer(Container):
    """The encoder-decoder of "Attention Is All You Need", PyTorch's ``nn.Transformer``: an encoder stack with a
    final LayerNorm over ``src`` and a decoder stack with a final LayerNorm over ``tgt`` attending over the
    encoder's output. forward(src (N, S, d_model), tgt (N, T, d_model), src_mask=None, tgt_mask=None,
    memory_mask=None, src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=False, tgt_is_causal=False, memory_is_causal=False) -> (N, T, d_model); **batch first by
    default** (``batch_first=False``: PyTorch's (S, N, E) and (T, N, E)). backward(dy) -> (dsrc, dtgt).
    Children ``encoder`` (``layers.i``, ``norm``) and ``decoder``, as PyTorch's state dict names them; every
    weight matrix drawn from Xavier's uniform distribution, as PyTorch's ``_reset_parameters`` does (biases as
    the layers draw them, LayerNorm's ones and zeros). Caches nothing itself.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation: Any = "relu",
                 custom_encoder: Any = None, custom_decoder: Any = None, layer_norm_eps: float = 1e-5,
                 batch_first: bool = True, norm_first: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = "float32"):
        super().__init__()
        if custom_encoder is not None or custom_decoder is not None:
            raise ValueError("Transformer: custom_encoder and custom_decoder are not supported: build the model as an "
                             "xn.Model holding your encoder and decoder (forward: memory = encoder(src), "
                             "decoder(tgt, memory))")
        dtype = _init.dtype_name(dtype, "Transformer")
        args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first, bias,
                device, dtype)
        encoder_layer = TransformerEncoderLayer(*args)
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers, norm=encoder_layer._norm(dtype))
        decoder_layer = TransformerDecoderLayer(*args)
        self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, norm=decoder_layer._norm(dtype))
        self.d_model, self.nhead, self.batch_first = encoder_layer.d_model, encoder_layer.nhead, batch_first
        for name, value in self.named_params().items():
            if value.ndim > 1:  # Xavier-uniform over PyTorch's (out, in) is the same bound over xpnet's (in, out)
                fan_in, fan_out = value.shape[0], math.prod(value.shape[1:])
                self.set_param(name, _init.uniform(tuple(value.shape), math.sqrt(6.0 / (fan_in + fan_out)), dtype))

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Any:
        """PyTorch's causal mask of ``sz`` positions, (sz, sz): -inf where key j > query i (not attended), 0
        elsewhere, for ``src_mask`` or ``tgt_mask`` (added to the scores, as ``is_causal=True`` masks). On the
        host (NumPy) unless ``device`` names one (PyTorch's ``.to(device)``); float32, PyTorch's default dtype,
        unless ``dtype``."""
        who = "Transformer.generate_square_subsequent_mask"
        if not is_int(sz) or sz < 0:
            raise ValueError(f"{who}: sz must be an int >= 0 (the sequence length), got {sz!r}")
        name = "float32" if dtype is None else _init.dtype_name(dtype, who)
        xp = CPU.xp
        mask = xp.triu(xp.full((sz, sz), -math.inf, dtype=getattr(xp, name)), k=1)
        return mask if device is None else to_device(mask, device)

    def config(self) -> dict[str, Any]:
        layer = self.encoder.layers[0].config()
        return {"d_model": layer.pop("d_model"), "nhead": layer.pop("nhead"),
                "num_encoder_layers": self.encoder.num_layers, "num_decoder_layers": self.decoder.num_layers, **layer}

    def forward(self, src: Any, tgt: Any, src_mask: Any = None, tgt_mask: Any = None,  # type: ignore[override]
                memory_mask: Any = None, src_key_padding_mask: Any = None, tgt_key_padding_mask: Any = None,
                memory_key_padding_mask: Any = None, src_is_causal: bool = False, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, train: bool = True) -> Any:
        train = self._check_train(train, "src, tgt, src_mask, tgt_mask, memory_mask, src_key_padding_mask, "
                                         "tgt_key_padding_mask, memory_key_padding_mask, src_is_causal, "
                                         "tgt_is_causal, memory_is_causal")
        memory = self.encoder.forward(src, src_mask, src_key_padding_mask, src_is_causal, train=train)
        return self.decoder.forward(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                                    tgt_is_causal, memory_is_causal, train=train)

    def backward(self, dy: Any) -> tuple[Any, Any]:
        dtgt, dmemory = self.decoder.backward(dy)
        return self.encoder.backward(dmemory), dtgt
