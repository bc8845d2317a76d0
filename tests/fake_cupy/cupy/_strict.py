"""What CuPy refuses of NumPy's API, so that the fake refuses it too: names CuPy lacks, parameters its
functions and ``ndarray`` methods do not take (:mod:`cupy._names`, generated from CuPy's source), and the
ufunc methods and keyword values CuPy's code rejects (the CuPy 14.2 file and line with each)."""

import functools
import inspect

from . import _names

# cupy/_core/_kernel.pyx:1268-1277 (ufunc.__call__ pops out, _where, dtype, casting; anything else is
# TypeError 'Wrong arguments'); 1447-1495: at only where a scatter op exists (_routines_math.pyx:905, 1060,
# _math/misc.py:330, 354, _routines_binary.pyx:23-47), reduce/accumulate only add and multiply, reduceat add.
_UFUNC_KWARGS = {"__call__": {"out", "dtype", "casting"}, "outer": {"out", "dtype", "casting"},
                 "reduce": {"axis", "dtype", "out", "keepdims"}, "accumulate": {"axis", "dtype", "out"},
                 "reduceat": {"axis", "dtype", "out"}, "at": set()}
_UFUNC_METHODS = {"at": {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"},
                  "reduce": {"add", "multiply"}, "accumulate": {"add", "multiply"}, "reduceat": {"add"}}


@functools.cache
def _signature(params):
    return inspect.signature(eval(f"lambda {params}: None"))  # the text is generated from CuPy's source


@functools.cache
def _bind_error(params, count, keywords):
    """Why ``count`` positional arguments and the ``keywords`` do not bind to ``params``, or None: binding
    depends on neither the values nor the call, so each such shape of call is bound once (a tenth of the
    fake's time went to ``Signature.bind``)."""
    try:
        _signature(params).bind(*range(count), **dict.fromkeys(keywords))
    except TypeError as e:
        return str(e)
    return None


def check_call(name, params, args, kwargs):
    """CuPy's TypeError where ``name(*args, **kwargs)`` does not bind to its parameters ``params``."""
    if params is None:
        return
    error = _bind_error(params, len(args), tuple(kwargs))
    if error is not None:
        raise TypeError(f"{name}() {error} (CuPy 14: {name}({params}))")
    if name in ("sort", "argsort", "ndarray.sort", "ndarray.argsort"):
        kind = _signature(params).bind(*args, **kwargs).arguments.get("kind")
        if kind is not None and kind != "stable":  # cupy/_core/core.pyx:1144-1146, _check_kind_sort
            raise ValueError("kind can only be None or 'stable'")
    if name == "einsum" and set(kwargs) - {"dtype", "optimize"}:  # cupy/linalg/_einsum.py:498-508
        raise TypeError(f"Did not understand the following kwargs: {sorted(set(kwargs) - {'dtype', 'optimize'})}")


def checked(name, f, params):
    """``f`` refusing the calls CuPy's ``name`` (parameters ``params``) refuses."""
    if params is None:
        return f

    @functools.wraps(f)
    def call(*args, **kwargs):
        check_call(name, params, args, kwargs)
        return f(*args, **kwargs)

    return call


def check_ufunc(ufunc, method, kwargs):
    """CuPy's refusal of a NumPy ufunc call (``ndarray.__array_ufunc__``, core.pyx:1969-2026)."""
    name = ufunc.__name__
    if name not in _names.CUPY:
        raise TypeError(f"cupy has no ufunc {name} (core.pyx:2003: __array_ufunc__ returns NotImplemented)")
    if method not in _UFUNC_KWARGS:
        raise TypeError(f"operand type(s) all returned NotImplemented from __array_ufunc__({name}.{method})")
    if method in _UFUNC_METHODS and name not in _UFUNC_METHODS[method]:
        raise NotImplementedError(f"`cupy_{name}.{method}` is not supported yet")
    extra = set(kwargs) - _UFUNC_KWARGS[method]
    if extra:
        raise TypeError(f"Wrong arguments {sorted(extra)} ({name}.{method})")
    if len(kwargs.get("out", ())) > 1:
        raise ValueError("The 'out' parameter must have exactly one array value")


def stable(name, args, kwargs):
    """NumPy's sort given CuPy's default kind, stable (cupy/_sorting/sort.py:19: None is 'stable')."""
    position = {"sort": 2, "argsort": 2, "ndarray.sort": 1, "ndarray.argsort": 1}.get(name)
    if position is None or len(args) > position or kwargs.get("kind") is not None:
        return kwargs
    return {**kwargs, "kind": "stable"}
