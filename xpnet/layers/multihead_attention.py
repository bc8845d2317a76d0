"""Multi-head attention: PyTorch's nn.MultiheadAttention (batch first unless ``batch_first=False``)."""

from __future__ import annotations

import math
import operator
from typing import Any

from .. import init as _init
from .._user import flag, is_real
from ..backend import fast_path, namespace, untracked
from .base import DEVICE_DEFAULT, Layer, positive_int, pytorch_defaults_only
from .grads import Grads
from .reuse import reused
from .scaled_dot_product import additive, attend, attend_backward, causal_kept, mask_array, no_keys
from .uses import called
from .zero_grad import counted

_INPUTS = "query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal"


class MultiheadAttention(Layer):
    """Attention of L queries over S keys in ``num_heads`` heads of ``head_dim = embed_dim // num_heads``:
    q, k, v projected, softmax(q k^T / sqrt(head_dim) + mask) v in each head, the heads concatenated and
    projected out.

    forward(query (N, L, E), key (N, S, kdim), value (N, S, vdim)) -> (attn_output (N, L, E), attn_weights
    (N, L, S), the heads' mean; (N, num_heads, L, S) with ``average_attn_weights=False``; None with
    ``need_weights=False``), a pair as PyTorch's. Self-attention is ``mha(x, x, x)``.
    backward(d_attn_output (N, L, E)) -> (dquery, dkey, dvalue): a model that passes one x as two or three
    of them adds their gradients (self-attention: ``dx = dq + dk + dv``), as the book adds the gradients of
    a value used twice; ``backward_self(dy)`` gives that sum in one product after ``mha(x, x, x)``. No gradient
    flows through ``attn_weights``.

    Masks, as PyTorch's: ``attn_mask`` (L, S) or (N * num_heads, L, S), boolean (True: not attended) or
    float (added to the scores); ``key_padding_mask`` (N, S), boolean (True: padding) or float.
    ``is_causal=True`` without ``attn_mask`` masks key j > query i (PyTorch raises there and wants the mask;
    with a mask, both use the mask). A query whose every key is masked gets NaN weights and output, as
    PyTorch's. ``dropout`` drops attention weights in training from the layer's seeded generator
    (``xn.init.seed``), as Dropout; the weights returned are the dropped ones, as PyTorch's.

    params, PyTorch's arrays in xpnet's (in, out) layout: when kdim == vdim == embed_dim, W_in (E, 3E) =
    ``in_proj_weight.T`` (columns q, k, v); else W_q (E, E) = ``q_proj_weight.T``, W_k (kdim, E) =
    ``k_proj_weight.T``, W_v (vdim, E) = ``v_proj_weight.T``. b_in (3E,) = ``in_proj_bias``, W_out (E, E) =
    ``out_proj.weight.T``, b_out (E,) = ``out_proj.bias`` (no biases with ``bias=False``). PyTorch's
    initialisation: Xavier-uniform projections in, U(+-1/sqrt(E)) out, zero biases.
    Caches the inputs, the heads' q (scaled), k, v, the weights before and after dropout and the heads' output.
    ``batch_first`` (True, xpnet's default; PyTorch's is False): ``batch_first=False`` takes and gives PyTorch's
    default layout, query (L, N, E), key and value (S, N, ...), attn_output and its gradients (L, N, E) and
    (S, N, ...); the weights and the masks are the same in both layouts, as PyTorch's. ``add_bias_kv``,
    ``add_zero_attn`` and ``device`` only at their defaults.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = True, device: Any = None, dtype: Any = "float32"):
        super().__init__()
        self.embed_dim = positive_int(self, "embed_dim", embed_dim)
        self.num_heads = positive_int(self, "num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{self.name}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if isinstance(dropout, bool) or not is_real(dropout) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be a float in [0, 1), got {dropout!r}")
        pytorch_defaults_only(self.name, {
            "add_bias_kv": (False, "xpnet's MultiheadAttention has no learned bias_k/bias_v; leave it False"),
            "add_zero_attn": (False, "xpnet's MultiheadAttention adds no zero key; leave it False"),
            "device": DEVICE_DEFAULT},
            {"add_bias_kv": add_bias_kv, "add_zero_attn": add_zero_attn, "device": device})
        self.batch_first = flag(batch_first, self.name, "batch_first")
        self.kdim = self.embed_dim if kdim is None else positive_int(self, "kdim", kdim)
        self.vdim = self.embed_dim if vdim is None else positive_int(self, "vdim", vdim)
        self.dropout, self.bias = float(dropout), flag(bias, self.name, "bias")
        self.dtype = _init.dtype_name(dtype, self.name)
        self.head_dim = self.embed_dim // self.num_heads
        E = self.embed_dim
        if self.kdim == self.vdim == E:
            self.params["W_in"] = _init.uniform((E, 3 * E), math.sqrt(6.0 / (4 * E)), self.dtype)
        else:
            for name, d in (("W_q", E), ("W_k", self.kdim), ("W_v", self.vdim)):
                self.params[name] = _init.uniform((d, E), math.sqrt(6.0 / (d + E)), self.dtype)
        self.params["W_out"] = _init.uniform((E, E), 1.0 / math.sqrt(E), self.dtype)
        if self.bias:
            self.params["b_in"] = _init.zeros((3 * E,), dtype=self.dtype)
            self.params["b_out"] = _init.zeros((E,), dtype=self.dtype)
        self.rng = _init.make_rng(None)
        self._cache, self._causal = None, None  # _causal: (the key of a query, its causal mask)

    def config(self) -> dict[str, Any]:
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "dropout": self.dropout, "bias": self.bias,
                "kdim": None if self.kdim == self.embed_dim else self.kdim,
                "vdim": None if self.vdim == self.embed_dim else self.vdim, "dtype": self.dtype,
                **({} if self.batch_first else {"batch_first": False})}

    def __call__(self, query: Any, key: Any, value: Any, key_padding_mask: Any = None,  # type: ignore[override]
                 need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                 is_causal: bool = False, train: bool | None = None) -> tuple[Any, Any]:
        """``forward`` in the layer's mode, recorded as a use (a second call in one training forward is taken back
        in reverse by backward, as every layer's: :mod:`xpnet.layers.reuse`)."""
        return self.forward(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights,
                            is_causal, train=called(self, train, _INPUTS))

    def _projections(self) -> tuple[Any, Any, Any]:
        """W_q, W_k, W_v, each (in, E)."""
        if "W_in" in self.params:
            W, E = self.params["W_in"], self.embed_dim
            return W[:, :E], W[:, E:2 * E], W[:, 2 * E:]
        return self.params["W_q"], self.params["W_k"], self.params["W_v"]

    def forward(self, query: Any, key: Any, value: Any, key_padding_mask: Any = None,  # type: ignore[override]
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False, train: bool = True) -> tuple[Any, Any]:
        query, key, value = untracked(query), untracked(key), untracked(value)
        train = self._check_train(train, _INPUTS)
        if not self.batch_first:  # PyTorch's (L, N, E): read batch first, one array passed twice kept one
            query, key, value = _swapped(self, query, key, value)
        need_weights = flag(need_weights, self.name, "need_weights")
        average = flag(average_attn_weights, self.name, "average_attn_weights")
        is_causal = flag(is_causal, self.name, "is_causal")
        xp = self._check_float(query)
        for x, what, arg in ((query, "query", "query"), (key, "key", "key"), (value, "value", "value")):
            self._check_float(x)
            self._check_like_params(x, what, arg)
        N, L, S, _, H, d = self._check_shapes(query, key, value)
        mask = _mask(self, xp, query, (N, H, L, S), attn_mask, key_padding_mask, is_causal)
        q, k, v = self._project_inputs(xp, query, key, value)
        p = self.dropout if train else 0.0
        oh, attended = attend(_split_heads(xp, q, H), _split_heads(xp, k, H), _split_heads(xp, v, H), mask,
                              1.0 / math.sqrt(d), p, self.rng, self)
        o, dropped = _merge_heads(xp, oh), attended.dropped
        self._cache = (query, key, value, attended, o)
        y = _by(xp, o, self.params["W_out"])
        if self.bias:
            y = y + self.params["b_out"]
        if not self.batch_first:
            y = xp.permute_dims(y, (1, 0, 2))
        if not need_weights:
            return y, None
        return y, xp.mean(dropped, axis=1) if average else dropped

    def _project_inputs(self, xp: Any, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
        """q, k, v (N, T, E): the inputs' projections, biases added. Self-attention (one array passed three
        times, with W_in) takes one product by the whole W_in (E, 3E), as PyTorch's in_proj does."""
        E = self.embed_dim
        if self._fused(query, key, value):
            qkv = _by(xp, query, self.params["W_in"])
            if self.bias:
                qkv = qkv + self.params["b_in"]
            return qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        Wq, Wk, Wv = self._projections()
        q, k, v = _by(xp, query, Wq), _by(xp, key, Wk), _by(xp, value, Wv)
        if self.bias:
            b = self.params["b_in"]
            q, k, v = q + b[:E], k + b[E:2 * E], v + b[2 * E:]
        return q, k, v

    def _fused(self, query: Any, key: Any, value: Any) -> bool:
        return query is key and key is value and "W_in" in self.params

    def backward(self, dy: Any) -> tuple[Any, Any, Any]:  # type: ignore[override]
        """The heads' attention backward (the softmax's through softmax_backward), then the projections'."""
        dq, dk, dv, _ = self._backward(dy)
        Wq, Wk, Wv = self._projections()
        xp = namespace(dq)
        grads = tuple(_by(xp, g, xp.permute_dims(W, (1, 0))) for g, W in ((dq, Wq), (dk, Wk), (dv, Wv)))
        return grads if self.batch_first else tuple(xp.permute_dims(g, (1, 0, 2)) for g in grads)

    @counted
    @reused  # as backward: one attention shared by two Transformer layers (PyTorch's l2.self_attn = l1.self_attn)
    def backward_self(self, dy: Any) -> Any:
        """Self-attention's dx = dquery + dkey + dvalue (N, L, E) after ``mha(x, x, x)``, in one product by
        W_in where ``backward`` takes three and two sums (the Transformer layers call this)."""
        query, key, value = self._need(self._cache)[:3]
        if not self._fused(query, key, value):
            raise ValueError(f"{self.name}.backward_self: the last forward was not self-attention with W_in (one "
                             "array as query, key and value); call backward(dy) for (dquery, dkey, dvalue)")
        dqkv = self._backward(dy)[3]
        xp = namespace(dqkv)
        dx = _by(xp, dqkv, xp.permute_dims(self.params["W_in"], (1, 0)))
        return dx if self.batch_first else xp.permute_dims(dx, (1, 0, 2))

    def _backward(self, dy: Any) -> tuple[Any, Any, Any, Any]:
        """Fills grads (not when frozen); returns the gradients of q, k and v (N, T, E) before the input
        projections, and for self-attention the three side by side (N, T, 3E) (else None)."""
        dy = untracked(dy)
        query, key, value, attended, o = self._need(self._cache)
        N, L, E = query.shape
        xp = self._check_grad(dy, (N, L, E) if self.batch_first else (L, N, E))
        if not self.batch_first:
            dy = xp.permute_dims(dy, (1, 0, 2))
        doh = _split_heads(xp, _by(xp, dy, xp.permute_dims(self.params["W_out"], (1, 0))), self.num_heads)
        dq, dk, dv = (_merge_heads(xp, g) for g in attend_backward(doh, attended))
        dqkv = xp.concat([dq, dk, dv], axis=-1) if self._fused(query, key, value) else None
        if not self._frozen:  # requires_grad_(False): none of the weight products, the saving fine-tuning is for
            self.grads = Grads(self.params, type(self), self._param_grads(xp, dy, (query, key, value), (dq, dk, dv),
                                                                             dqkv, o))
        return dq, dk, dv, dqkv

    def _param_grads(self, xp: Any, dy: Any, inputs: tuple[Any, Any, Any], dqkv_parts: tuple[Any, Any, Any],
                     dqkv: Any, o: Any) -> dict[str, Any]:
        """The gradient of every param from dy (N, L, E), the inputs, the gradients of q, k, v (N, T, E) (side
        by side as dqkv (N, T, 3E) for self-attention, else None) and the heads' output o (N, L, E)."""
        grads = {"W_out": _weight_grad(xp, o, dy)}
        if dqkv is not None:  # one product for the whole W_in
            grads["W_in"] = _weight_grad(xp, inputs[0], dqkv)
            if self.bias:
                grads["b_in"] = xp.sum(dqkv, axis=(0, 1))
        else:
            dW = [_weight_grad(xp, x, g) for x, g in zip(inputs, dqkv_parts)]
            if "W_in" in self.params:
                grads["W_in"] = xp.concat(dW, axis=1)
            else:
                grads["W_q"], grads["W_k"], grads["W_v"] = dW
            if self.bias:
                grads["b_in"] = xp.concat([xp.sum(g, axis=(0, 1)) for g in dqkv_parts])
        if self.bias:
            grads["b_out"] = xp.sum(dy, axis=(0, 1))
        return {name: grads[name] for name in self.params}

    def _check_shapes(self, query: Any, key: Any, value: Any) -> tuple[int, ...]:
        """(N, L, S, E, num_heads, head_dim) after checking the three inputs' shapes."""
        E = self.embed_dim
        good = query.ndim == key.ndim == value.ndim == 3 and query.shape[2] == E and key.shape[2] == self.kdim \
            and value.shape[2] == self.vdim and query.shape[0] == key.shape[0] == value.shape[0] \
            and key.shape[1] == value.shape[1]
        if not good:
            if not self.batch_first:  # the shapes as given, time first (_swapped checked they are 3-D)
                q, k, v = ((x.shape[1], x.shape[0], x.shape[2]) for x in (query, key, value))
                raise ValueError(f"{self.name}: expected query (L, N, {E}), key (S, N, {self.kdim}) and value (S, N, "
                                 f"{self.vdim}) (batch_first=False; one sequence as x[:, None]), got {q}, {k} and {v}")
            raise ValueError(f"{self.name}: expected query (N, L, {E}), key (N, S, {self.kdim}) and value (N, S, "
                             f"{self.vdim}) (batch_first; one sequence as x[None]), got {tuple(query.shape)}, "
                             f"{tuple(key.shape)} and {tuple(value.shape)}")
        if key.shape[1] == 0:
            no_keys(self.name, "key", tuple(key.shape))
        return (int(query.shape[0]), int(query.shape[1]), int(key.shape[1]), E, self.num_heads, self.head_dim)


def _swapped(layer: Any, query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
    """Time-first query (L, N, E), key and value (S, N, ...) as (N, L, E), (N, S, ...): one array passed as two
    or three of them stays one (self-attention's one product by W_in)."""
    if not query.ndim == key.ndim == value.ndim == 3:
        raise ValueError(f"{layer.name}: expected query (L, N, {layer.embed_dim}), key (S, N, {layer.kdim}) and value "
                         f"(S, N, {layer.vdim}) (batch_first=False; one sequence as x[:, None]), got "
                         f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}")
    xp = namespace(query)
    q = xp.permute_dims(query, (1, 0, 2))
    k = q if key is query else xp.permute_dims(key, (1, 0, 2))
    v = q if value is query else k if value is key else xp.permute_dims(value, (1, 0, 2))
    return q, k, v


def _split_heads(xp: Any, x: Any, heads: int) -> Any:
    """(N, T, E) -> (N, heads, T, E // heads)."""
    N, T, E = x.shape
    return xp.permute_dims(xp.reshape(x, (N, T, heads, E // heads)), (0, 2, 1, 3))


def _merge_heads(xp: Any, x: Any) -> Any:
    """(N, heads, T, head_dim) -> (N, T, heads * head_dim)."""
    N, H, T, d = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (N, T, H * d))


def _weight_grad(xp: Any, x: Any, g: Any) -> Any:
    """x^T g over the N * T rows of x (N, T, D_in) and g (N, T, D_out)."""
    matmul = fast_path("matmul", xp, operator.matmul)
    return matmul(xp.permute_dims(xp.reshape(x, (-1, x.shape[2])), (1, 0)), xp.reshape(g, (-1, g.shape[2])))


def _by(xp: Any, x: Any, W: Any) -> Any:
    """x (N, T, D_in) @ W (D_in, D_out) -> (N, T, D_out) as one product of x's N * T rows (NumPy would multiply
    each of the N matrices on its own), through the "matmul" fast path, as Linear's."""
    N, T, D = x.shape
    y = fast_path("matmul", xp, operator.matmul)(xp.reshape(x, (N * T, D)), W)
    return xp.reshape(y, (N, T, W.shape[1]))


# A mask made for PyTorch's default (L, N, E) batches, given with them to a layer that reads (N, L, E).
_TIME_FIRST = ("; the query {} is read batch first, (N, L, E), and the mask fits it read time first, (L, N, E), "
               "PyTorch's default layout: build the Transformer layers (and PositionalEncoding) with "
               "batch_first=False, or permute the inputs to (N, L, E)")


def _mask(layer: Any, xp: Any, query: Any, shape: tuple[int, ...], attn_mask: Any, key_padding_mask: Any,
          is_causal: bool) -> Any:
    """The additive mask, broadcastable to the scores (N, heads, L, S), or None: boolean masks as -inf where
    True, float masks as they are, attn_mask and key_padding_mask added; ``is_causal`` alone the causal mask that
    ``layer`` keeps."""
    N, H, L, S = shape
    who = layer.name
    total = None
    if is_causal and attn_mask is None:
        total = xp.reshape(causal_kept(layer, xp, query, L, S), (1, 1, L, S))
    for m, name, shapes in (
            (attn_mask, "attn_mask", {(L, S): (1, 1, L, S), (N * H, L, S): (N, H, L, S)}),
            (key_padding_mask, "key_padding_mask", {(N, S): (N, 1, 1, S)})):
        if m is None:
            continue
        mask_array(m, query, name, who)
        if tuple(m.shape) not in shapes:
            time_first = tuple(m.shape) == ((N, N) if name == "attn_mask" else (L, N)) and N != L and \
                getattr(layer, "batch_first", True)
            raise ValueError(f"{who}: {name} must have shape {' or '.join(map(str, shapes))}, got {tuple(m.shape)}"
                             + (_TIME_FIRST.format(tuple(query.shape)) if time_first else ""))
        m = additive(xp, m, query, name, who)
        m = xp.reshape(m, shapes[tuple(m.shape)])
        total = m if total is None else total + m
    return total
