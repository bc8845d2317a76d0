"""Layers made of layers: :class:`Container`, the base of ``Residual``, ``Concat``, ``xn.Model`` and
``xn.Sequential``, and two tools that walk a whole model: :func:`mode` and :func:`watch`."""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from typing import Any, Iterator

from .._chainer import MODEL as _CHAINER_NAMES
from .._user import flag, not_here
from .base import Layer
from .named_pairs import NamedDict
from .torch_max import refuse_torch_max
from .pytorch_attributes import layer_hint, model_hint
from .tree import HOOKS, not_built, stored_attribute, tensor_method_hint
from .uses import called, scoped

__all__ = ["Container", "Watcher", "mode", "no_train", "watch", "STATE_HINT"]

# What an array given after the input most likely is, and where xpnet takes it.
STATE_HINT = ("an initial state (PyTorch's model(x, h0)) is set on the recurrent layer before the call: "
              "model[i].set_state(h0, c0) (or layer.set_state), then model(x); the book's forward(x, t) -> loss is "
              "loss.forward(model.forward(x), t) here")

# What a PyTorch user calls on a model, and what xpnet has instead.
_TO = "model.to(device) moves a model: model.to('cuda'), model.to('cpu'), model.to('cuda:1')"
_PYTORCH_NAMES = {
    "cuda": _TO,
    "cpu": _TO,
    "named_parameters": "model.named_params() is a dict of the parameters by dotted name ('0.W', "
                        "'stage1.conv.W'); model.named_params().items() gives PyTorch's pairs. Arrays carry no "
                        "requires_grad flag: those that train (PyTorch's `if param.requires_grad`) are "
                        "model.trainable_params(), a dict by name. The names are xpnet's (W, b, gamma, beta; "
                        "an LSTM's Wx, Wh, b), not PyTorch's weight and bias, so a filter such as `if 'weight' in "
                        "name` or `'bias' in name` matches none of them: pick the layers by type, for m in "
                        "model.named_modules().values(): if isinstance(m, xn.layers.Linear): "
                        "xn.init.xavier_normal_(m.weight); xn.init.zeros_(m.bias)",
    "modules": "model.named_modules() is a dict of every layer and model inside, by dotted name; "
               ".values() gives the objects",
    "children": "model.named_children() is a dict of the direct sub-layers by name; .values() gives the objects",
    "add_module": "assign the layer as an attribute (self.conv = xn.layers.Conv2d(...)) in __init__",
    "to_gpu": _TO + " (Chainer's to_gpu/to_cpu/to_device)",
    "to_cpu": _TO + " (Chainer's to_gpu/to_cpu/to_device)",
    "to_device": _TO + " (Chainer's to_gpu/to_cpu/to_device)",
    "double": "model.to(dtype='float64') casts every parameter and buffer (dtype='float32' for PyTorch's "
              ".float(), 'float16' for .half())",
    "float": "model.to(dtype='float32') casts every parameter and buffer (dtype='float64' for PyTorch's "
             ".double(), 'float16' for .half())",
    "half": "model.to(dtype='float16') casts every parameter and buffer (dtype='float32' for PyTorch's "
            ".float(), 'float64' for .double())",
    "namedparams": "model.named_params() is a dict of the parameters by dotted name ('0.W', 'stage1.conv.W')",
    "save_params": "model.save('model.npz') writes the model (xn.load reads it back, on any device); the book's "
                   "save_params writes a pickle that xn.load_book_params(path, model) reads",
    "load_params": "xn.load_book_params(path, model) reads the book's save_params files (Rnnlm.pkl, "
                   "AttentionSeq2seq.pkl) into a model built with the book's arguments; xpnet's own: xn.load(path)",
    **dict.fromkeys(("register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                     "register_backward_hook"), HOOKS),
    "register_buffer": "put the array in self.buffers['name'] of a layer of your own (saved and moved with "
                       "the model, not trained)",
    "share_memory": "xpnet's parameters are arrays of this process, never in shared memory: a model given to a "
                    "multiprocessing.Process (mnist_hogwild's) is a copy there, whose training never reaches this "
                    "one (and threads calling one model at once mix the caches its layers keep for backward); train "
                    "in this process (train(0, args, model, ...)), or data-parallel under mpiexec: "
                    "xn.train(..., comm=xn.distributed.init()), gradients averaged at each step",
}


def _hinted_init(init: Any) -> Any:
    """``init`` with PyTorch's in-place tensor methods (``.data.normal_``) answered by what to write."""
    @functools.wraps(init)
    def hinted(self: Any, *args: Any, **kwargs: Any) -> None:
        with tensor_method_hint():
            init(self, *args, **kwargs)

    return hinted


class Container(Layer):
    """A layer whose sub-layers are its attributes: layers, and lists, tuples or dicts of layers.

    They are found in assignment order, so ``named_params()`` reads ``"conv1.W"``, ``"blocks.0.W"``,
    ``"heads.age.b"``; a list appended to later is seen too. A container may also hold parameters of
    its own in ``self.params`` (named without a prefix), whose gradients its ``backward`` fills.
    Subclasses write ``forward(*xs, train=True)`` and ``backward(dy)`` (returning dx, a tuple for
    several inputs); ``model(x)`` calls ``forward`` in the model's mode. Subclass ``xn.Model`` for a
    model of your own: it adds ``predict``, ``summary`` and ``save``.
    """

    _name_hints: dict[str, str] = {}  # a subclass's own hints for names it lacks, over the ones above
    _attribute_children = True  # set_submodule(name, layer, strict=False) may add one as an attribute
    uses_inside = True  # each child its forward calls, self.relu(x) or self.relu.forward(x), is a use (layers.uses)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls):  # one layer object per use, checked over the whole forward; train= as the mode
            cls.forward = scoped(vars(cls)["forward"], mode)
        if "__init__" in vars(cls):  # d2l's self.net.weight.data.normal_(0, 0.01) in __init__: say what to write
            cls.__init__ = _hinted_init(vars(cls)["__init__"])

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: params/grads/buffers come from Layer.__init__.
        if name in ("params", "grads", "buffers"):
            raise AttributeError(not_built(self), name=name, obj=self)
        hints = {**_CHAINER_NAMES, **_PYTORCH_NAMES, **self._name_hints}
        hint = model_hint(self, name) or layer_hint(self, name)  # PyTorch's model.weight, lstm.weight_ih_l1
        if hint is not None:
            hints[name] = hint
        stored = None if name in hints else stored_attribute(self, name)  # self.a for self.params['a']
        if stored is not None:
            raise stored
        raise not_here(type(self).__name__, name, hints, kind="object")

    @contextlib.contextmanager
    def init_scope(self) -> Iterator[None]:
        """Chainer's ``with self.init_scope():``, accepted as it is: every layer assigned as an attribute
        is registered, inside the scope or not."""
        yield

    def __call__(self, *xs: Any, train: bool | None = None, **options: Any) -> Any:
        """``forward(*xs, **options)`` in the model's mode (``train()``/``eval()``), or as ``train`` says;
        ``options`` are forward's other keywords (a Transformer's masks)."""
        refuse_torch_max(self, sys._getframe(1), xs)  # _, predicted = np.max(outputs, 1) after the call
        train = called(self, train, hint=STATE_HINT)
        try:
            return self.forward(*xs, train=train, **options)
        except TypeError:
            self._check_inputs(xs, train, options)
            raise

    def _check_inputs(self, xs: tuple[Any, ...], train: bool, options: dict[str, Any]) -> None:
        """After forward raised a TypeError: when forward takes no ``train`` (PyTorch's ``forward(self, x)``),
        say to add it; when the call itself did not fit forward's signature (an extra array landing on
        ``train``: "got multiple values for argument 'train'"), say how many inputs the model takes and where
        an initial state goes; else leave the error as it is."""
        try:
            signature = inspect.signature(self.forward)
        except ValueError:  # no signature to read (a builtin): nothing to add
            return
        missing = no_train(self)
        if missing:
            raise TypeError(missing) from None
        try:
            signature.bind(*xs, train=train, **options)
        except TypeError:
            inputs = [name for name in signature.parameters if name != "train"]
            unknown = [k for k in options if k not in signature.parameters]
            if unknown and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
                hint = ("; Keras' training= is train= here" if "training" in unknown else
                        f"; {STATE_HINT}" if {"hx", "h0", "state"} & set(unknown) else "")
                raise TypeError(f"{self.name}: forward({', '.join(inputs)}, train=True) takes no keyword "
                                f"{', '.join(map(repr, unknown))}{hint}") from None
            names = list(signature.parameters)
            before = names[:names.index("train")] if "train" in names else inputs
            after = inputs[len(before):]
            if after and len(xs) > len(before):  # forward(a, b, train=True, target=None) called as model(a, b, t)
                raise TypeError(f"{self.name}: forward{signature} takes {len(before)} input"
                                f"{'s' * (len(before) != 1)} before train, got {len(xs)}: the next would be "
                                f"taken as train; pass {after[0]} by name, model(..., {after[0]}=...), or put "
                                "train last in forward's signature") from None
            raise TypeError(f"{self.name}: forward({', '.join(inputs)}, train=True) takes {len(inputs)} input"
                            f"{'s' * (len(inputs) != 1)}, got {len(xs)}; {STATE_HINT}") from None

    def named_children(self) -> dict[str, Layer]:
        children: dict[str, Layer] = NamedDict()  # a dict; PyTorch's pair loop over it refused
        for attr, value in vars(self).items():
            if isinstance(value, Layer):
                children[attr] = value
            elif isinstance(value, (list, tuple, dict)) and value:
                items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
                layers = [v for _, v in items if isinstance(v, Layer)]
                if not layers:
                    continue
                if len(layers) < len(items):
                    raise TypeError(f"{type(self).__name__}.{attr} holds layers and other objects; keep the layers "
                                    "in a list or dict of their own, so that their parameters are found")
                children.update((f"{attr}.{k}", v) for k, v in items)
        return children

    @property
    def dtype(self) -> Any:
        """The dtype of the parameters (None without any)."""
        for v in self.named_params().values():
            return v.dtype
        return None

    def __repr__(self) -> str:
        """PyTorch-style: the children, each as its own repr, indented."""
        children = self.named_children()
        if not children:
            return f"{self.name}()"
        inner = "".join(f"  ({name}): {repr(child).replace(chr(10), chr(10) + '  ')}\n"
                        for name, child in children.items())
        return f"{self.name}(\n{inner})"


def no_train(model: Layer) -> str:
    """What to write when ``model.forward`` takes no ``train`` (PyTorch's ``forward(self, x)``), else ``""``."""
    takes = inspect.signature(model.forward).parameters
    if "train" in takes or any(p.kind is p.VAR_KEYWORD for p in takes.values()):
        return ""
    flags = [name for name in takes if name.startswith("train")]  # the book's train_flg
    if flags:
        renamed = [p.replace(name=("train" if p.name == flags[0] else p.name)) for p in takes.values()]
        return (f"{model.name}.forward takes {flags[0]}, where training and inference pass train=True and False: "
                f"rename it, def forward(self, {str(inspect.Signature(renamed))[1:-1]})")
    inputs = str(inspect.Signature(list(takes.values())))[1:-1]  # defaults, * and annotations kept: (x, future=0)
    return (f"{model.name}.forward must take train= (write def forward(self, {inputs}{', ' * bool(inputs)}train=True) "
            "and pass train on to the layers; and backward(self, dy), returning dx: xpnet has no autograd): "
            "training and inference call it with train=True and False")


@contextlib.contextmanager
def mode(model: Layer, training: bool) -> Iterator[None]:
    """Within, every node of ``model`` is in training (``True``) or evaluation mode; afterwards each
    has the mode it had before (``xn.train``, ``xn.evaluate`` and ``predict`` leave the user's)."""
    before = [(node, node.training) for node in model.named_modules().values()]
    model.train(training)
    try:
        yield
    finally:
        for node, flag in before:
            node.training = flag


class Watcher:
    """What :func:`watch` tells about each call of a leaf layer; override the methods you need.
    ``xs`` are the arrays the forward was given, ``dx`` is None after ``backward_params``."""

    def before_forward(self, name: str, layer: Layer, xs: tuple[Any, ...]) -> None:
        pass

    def forward(self, name: str, layer: Layer, xs: tuple[Any, ...], y: Any) -> None:
        pass

    def before_backward(self, name: str, layer: Layer, dy: Any) -> None:
        pass

    def backward(self, name: str, layer: Layer, dy: Any, dx: Any) -> None:
        pass


@contextlib.contextmanager
def watch(model: Layer, watcher: Watcher) -> Iterator[dict[str, Layer]]:
    """Within, each leaf layer of ``model`` reports its forward and backward calls to ``watcher``
    by its dotted name, whatever code calls it (a Sequential, a model's own forward). Yields the
    leaves by name. Used to name the layer where a value went non-finite, and by ``xn.gradcheck``
    to see which layer wrote into an array it was given."""
    leaves = {name: node for name, node in model.named_modules().items() if not node.named_children()}
    for name, leaf in leaves.items():
        _wrap(name, leaf, watcher)
    try:
        yield leaves
    finally:
        for leaf in leaves.values():
            for method in ("forward", "backward", "backward_params"):
                vars(leaf).pop(method, None)


def _wrap(name: str, leaf: Layer, watcher: Watcher) -> None:
    """Put watched versions of the leaf's forward, backward and backward_params on the instance. A
    call made from inside another (Linear's backward calls its backward_params) is reported once."""
    busy: list[bool] = []

    def watched(method: Any, before: Any, after: Any) -> Any:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if busy:
                return method(*args, **kwargs)
            busy.append(True)
            try:
                before(name, leaf, *args)
                out = method(*args, **kwargs)
                after(name, leaf, *args, out)
            finally:
                busy.pop()
            return out
        return call

    def arrays(args: tuple[Any, ...]) -> tuple[Any, ...]:  # the book's forward(x, train_flg) passes a flag too
        return tuple(a for a in args if hasattr(a, "shape"))

    leaf.forward = watched(leaf.forward, lambda n, layer, *xs: watcher.before_forward(n, layer, arrays(xs)),
                           lambda n, layer, *xs_y: watcher.forward(n, layer, arrays(xs_y[:-1]), xs_y[-1]))
    # backward(dy, dh_n, dc_n) (a recurrent layer's final-state gradients, PyTorch's order): the watcher sees dy
    leaf.backward = watched(leaf.backward, lambda n, layer, dy, *_: watcher.before_backward(n, layer, dy),
                            lambda n, layer, dy, *rest_dx: watcher.backward(n, layer, dy, rest_dx[-1]))
    leaf.backward_params = watched(leaf.backward_params, watcher.before_backward,
                                   lambda n, layer, dy, _: watcher.backward(n, layer, dy, None))
