"""The fake's ``cupy.ElementwiseKernel`` and ``cupy.ReductionKernel``, under CuPy's rules for their arguments
(CuPy 14.2's ``cupy/_core/_kernel.pyx``: ``ParameterInfo``, ``_decide_params_type_core``, ``_broadcast``,
``_get_out_args_with_params``, ``ElementwiseKernel.__call__``; ``cupy/_core/_reduction.pyx``:
``ReductionKernel``):

- a parameter's type is a one-letter placeholder (``T``), decided by the *arrays* given for it, or a dtype
  name (``float32``, ``bool``, ``int64``; note that ``float`` is NumPy's float64); a Python or NumPy scalar
  never decides a placeholder and is cast to the parameter's type;
- an array whose dtype is not the one its parameter already has raises ``TypeError('Type is mismatched.
  ...')``: CuPy never casts an array argument, so a float64 ``lr`` for a float32 ``T`` fails on the GPU;
- outputs must be CuPy arrays of the shape all the non-``raw`` arrays broadcast to (``Out shape is
  mismatched``); given only the inputs, the outputs are made; the call returns the output, or a tuple of them;
- a reduction accumulates in its output's type (``reduce_type`` defaults to the first output's), and its
  ``map_expr`` must be summed (``a + b``), the only reduction emulated here.

The body runs as NumPy statements (one per ``;``, plain arithmetic) on the arrays' memory.
"""

import math as _math

import numpy as _np

from . import _rounding
from ._dispatch import _check, _host, _kernel

# CUDA's math functions the kernel bodies call; erf as the C library's, elementwise (NumPy has none).
_MATH = {"sqrt": _np.sqrt, "exp": _np.exp, "log": _np.log, "abs": _np.abs,
         "erf": lambda x: _np.vectorize(_math.erf, otypes=[_np.float64])(x).astype(_np.asarray(x).dtype)}


class _Param:
    """``"raw T x"`` -> name ``x``, ``placeholder`` ``"T"`` or ``dtype``, ``raw``."""

    def __init__(self, text):
        words = text.split()
        if len(words) < 2:
            raise Exception(f"Syntax error: {text}")
        kind, self.name = words[-2:]
        for word in words[:-2]:
            if word not in ("raw", "_non_const"):
                raise Exception(f'Unknown keyword "{word}"')
        self.raw = "raw" in words[:-2]
        self.placeholder = kind if len(kind) == 1 else None
        self.dtype = None if self.placeholder else _np.dtype(kind)


def _params(text):
    return [_Param(p) for p in text.strip().split(",")] if text.strip() else []


def _decide_types(in_params, out_params, in_args, out_args):
    """The dtype of every parameter, as ``_decide_params_type_core``: outputs first, then the input arrays."""
    from . import ndarray
    types = {}

    def settle(p, a, output):
        if not isinstance(a, ndarray):
            if output:
                raise TypeError("Output arguments must be cupy.ndarray")
            return
        if p.dtype is not None:
            if a.dtype != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {p.dtype}")
        elif p.placeholder in types:
            if a.dtype != types[p.placeholder]:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {types[p.placeholder]} {p.placeholder}")
        else:
            types[p.placeholder] = a.dtype

    for p, a in zip(out_params, out_args):
        settle(p, a, True)
    for p, a in zip(in_params, in_args):
        settle(p, a, False)
    return [p.dtype if p.dtype is not None else types[p.placeholder] for p in in_params], \
        [p.dtype if p.dtype is not None else types[p.placeholder] for p in out_params]


def _broadcast_shape(params, args):
    from . import ndarray
    shapes = [a.shape for p, a in zip(params, args) if isinstance(a, ndarray) and not p.raw]
    if not shapes:
        raise ValueError("Loop size is undecided.")
    return _np.broadcast_shapes(*shapes)


def _values(params, args, types):
    """Each argument as the kernel sees it: an array's memory, a scalar cast to its parameter's type."""
    from . import ndarray
    return {p.name: a._a if isinstance(a, ndarray) else _np.dtype(t).type(a) for p, a, t in zip(params, args, types)}


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name)``: see the module's docstring."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, **kwargs):
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        if "i" in [p.name for p in self.in_params + self.out_params]:
            raise ValueError("Can not use 'i' as a parameter name")
        self.operation, self.name, self.no_return, self.return_tuple = operation, name, no_return, return_tuple

    def __call__(self, *args, size=-1, block_size=128, stream=None):
        nin, nargs = len(self.in_params), len(self.in_params) + len(self.out_params)
        if len(args) not in (nin, nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {nin} or {nargs} "
                            f"(with outputs), but given {len(args)}.")
        _check(*args)
        ins, outs = list(args[:nin]), list(args[nin:])
        in_types, out_types = _decide_types(self.in_params, self.out_params, ins, outs)
        shape = _broadcast_shape(self.in_params + self.out_params, ins + outs)
        if not outs:
            from . import empty
            outs = [empty(shape, t) for t in out_types]
        elif any(tuple(o.shape) != tuple(shape) for p, o in zip(self.out_params, outs) if not p.raw):
            raise ValueError("Out shape is mismatched")
        values = _values(self.in_params + self.out_params, ins + outs, in_types + out_types)
        out_names = [p.name for p in self.out_params]

        def run():
            scope = dict(values)
            outputs = {k: scope[k] for k in out_names}
            for statement in filter(None, (s.strip() for s in self.operation.split(";"))):
                exec(statement, dict(_MATH), scope)  # noqa: S102 - the package's own kernel bodies
            for k, target in outputs.items():
                if scope[k] is not target:
                    target[...] = scope[k]

        _kernel("ElementwiseKernel", run, args, outs, finish=lambda r: None,
                label=_rounding.kernel_label(self.name, self.operation, "elementwise"), counted_as=self.name)
        if self.no_return:
            return None
        return outs[0] if len(outs) == 1 and not self.return_tuple else tuple(outs)


class ReductionKernel:
    """``cupy.ReductionKernel(in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name)``:
    ``map_expr`` summed over ``axis`` in the output's type (``reduce_expr`` must be ``a + b``)."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce_kernel",
                 reduce_type=None, **kwargs):
        if reduce_expr.replace(" ", "") != "a+b" or post_map_expr.replace(" ", "") not in ("", "y=a"):
            raise NotImplementedError("the fake ReductionKernel sums a map expression into y, nothing else")
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        if len(self.out_params) != 1:
            raise NotImplementedError("the fake ReductionKernel has one output")
        self.map_expr, self.name = map_expr, name

    def __call__(self, *args, axis=None, keepdims=False, out=None, stream=None):
        if len(args) != len(self.in_params):
            raise TypeError(f"Wrong number of arguments for {self.name}")
        _check(*args, *([] if out is None else [out]))
        in_types, (out_type,) = _decide_types(self.in_params, self.out_params, list(args),
                                              [] if out is None else [out])
        _broadcast_shape(self.in_params, args)
        values = _values(self.in_params, args, in_types)

        def run():
            scope = {k: _host(v) for k, v in values.items()}
            mapped = _np.asarray(eval(self.map_expr, dict(_MATH), scope)).astype(out_type)  # noqa: S307
            shape = _np.broadcast_shapes(*(_np.shape(v) for v in scope.values()))
            return _np.sum(_np.broadcast_to(mapped, shape), axis=axis, keepdims=keepdims, dtype=out_type)

        if out is None:
            return _kernel("ReductionKernel", run, args, label=_rounding.kernel_label(self.name, "", "reduction"),
                           counted_as=self.name)

        def into():
            out._a[...] = run()

        _kernel("ReductionKernel", into, args, (out,), finish=lambda r: None,
                label=_rounding.kernel_label(self.name, "", "reduction"), counted_as=self.name)
        return out
