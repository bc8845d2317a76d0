"""Models saved and loaded as device-independent ``.npz`` files: the architecture as a JSON record,
then every parameter and buffer, written atomically and read after checking every header.

The record of a ``Sequential`` is ``{"format": 1, "layers": [layer records]}`` (the first format, which
every version reads); any other model's is ``{"format": 2, "model": record}``, the record of its class
(by module and name for a class of the user's) and of the arguments it was built with
(``xpnet.layers.records``). Nothing is ever unpickled or imported: a class the program has not
defined is named in the error, with what to import. Where layers are frozen (``requires_grad_(False)``),
the record names them (``"frozen"``: their dotted names, ``""`` for the model), and ``xn.load`` freezes
them again, as ``torch.save(model)`` keeps ``requires_grad``; ``"eval"`` names the nodes saved in evaluation
mode (``model.eval()``), which ``xn.load`` gives back in it, as ``torch.load`` keeps ``training``;
``"frozen_batch_norm"`` names the ``FrozenBatchNorm2d`` layers, which ``xn.load`` makes from the BatchNorm a
model's constructor builds there (``xn.freeze_batch_norm`` after the model was built). A record is built again at
save, without drawing weights: one that would not make the model's arrays (a layer replaced after the model was
built, with another shape) is refused there rather than by ``xn.load``.

``xn.save`` of anything but a model (a state dict, PyTorch's checkpoint dict of state dicts, epoch and loss) writes
a tree of values (``xpnet.io.tree_file``), which ``xn.load`` gives back as it was: PyTorch's ``torch.save`` and
``torch.load``, without pickle. Both take a binary file object in place of the path, as PyTorch's do
(``xpnet.io.streams``: written at its position without atomicity, read from it).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj

from .. import init as _init
from ..backend import CPU, Device, device as resolve_device, float_dtype_name, to_device, to_numpy
from ..io.npz import NpzReader, XpnetFileError
from ..io.streams import save_npz
from ..io.tree_file import TREE_FORMAT, TREE_KEY, TREE_WHAT, read_tree, save_tree
from ..layers.frozen_norm import FrozenBatchNorm2d, freeze_named
from ..layers.hidden_layers import warn_unlisted
from ..layers.norm import BatchNorm
from ..layers.records import BuildError, from_record, to_record
from ..layers.tied import TiedLinear
from ..layers.tree import frozen_nodes
from .model import Model
from .sequential import Sequential

__all__ = ["save_model", "save", "load", "XpnetFileError", "FORMATS", "architecture", "check_format",
           "model_from_architecture", "stored_dtype", "read_state", "CHECKPOINT_KEY", "CHECKPOINT_WHAT"]

_CONFIG_KEY = "__xpnet_model__"
# A training checkpoint's record (xpnet.training.checkpoint), which holds the architecture too.
CHECKPOINT_KEY = "__xpnet_checkpoint__"
CHECKPOINT_WHAT = "an xpnet training checkpoint (written by xn.callbacks.ModelCheckpoint(path, full=True))"
_MODEL_WHAT = "an xpnet model file (written by model.save)"
_ANY_WHAT = "an xpnet model file or a file of saved values (written by xn.save or model.save)"
FORMATS = (1, 2)  # 1: a Sequential as its list of layers; 2: any model as the record of its class


def architecture(model: Any) -> dict[str, Any]:
    """The JSON record of ``model``'s architecture, with the format version it needs."""
    nodes = list(model.named_modules().values())
    modules = {id(node) for node in nodes}
    for node in nodes:
        if isinstance(node, TiedLinear) and id(node.embedding) not in modules:
            raise TypeError(f"{node.name} reads the matrix of an Embedding that is not part of this model, so "
                            "the file could not hold it: save a model holding both (e.g. xn.Sequential(embedding, "
                            "..., tied))")
    seen: dict[int, int] = {}  # one record per layer object: a shared layer is written once
    frozen = {"frozen": frozen_nodes(model)} if frozen_nodes(model) else {}  # an older xpnet ignores the key
    evaluating = [name for name, node in model.named_modules().items() if not node.training]
    if evaluating:  # an older xpnet ignores the key (and loads the model in training mode)
        frozen["eval"] = evaluating
    converted = [name for name, node in model.named_modules().items() if isinstance(node, FrozenBatchNorm2d)]
    if converted:
        frozen["frozen_batch_norm"] = converted
    if type(model) is Sequential and model.config().keys() == {"layers"}:  # named layers: format 2 keeps the names
        meta = {"format": 1, "layers": [to_record(layer, seen) for layer in model.layers], **frozen}
    else:
        meta = {"format": 2, "model": to_record(model, seen), **frozen}
    _check_rebuilds(model, meta)
    return meta


def _check_rebuilds(model: Any, meta: dict[str, Any]) -> None:
    """Raise where the record builds a model with other arrays than ``model``'s, which ``xn.load`` would then
    refuse: a layer assigned after the model was built (``model.head = Linear(512, 3)``, as a PyTorch user
    replaces a head) is not among the arguments the record keeps. A record that cannot be built is left to
    ``xn.load`` to report, as before."""
    try:
        with _init.skip_init():
            rebuilt = _build(meta)
    except Exception:  # noqa: BLE001 - a constructor's own error is load's to report; saving went on before
        return
    ours = {name: tuple(value.shape) for name, value in model.state().items()}
    theirs = {name: tuple(value.shape) for name, value in rebuilt.state().items()}
    if ours == theirs:
        return
    differ = [f"{name} {ours[name]} where they make {theirs[name]}" for name in ours
              if name in theirs and ours[name] != theirs[name]]
    differ += [f"{name} {ours[name]}, which they do not make" for name in ours if name not in theirs]
    differ += [f"no {name} {theirs[name]}, which they make" for name in theirs if name not in ours]
    raise ValueError(f"{model.name} built again from the arguments it was built with, as xn.load builds it, "
                     f"would not hold this model's arrays: {'; '.join(differ)}. A layer assigned after the model "
                     "was built (model.head = Linear(...)) is not among those arguments: build the model with "
                     "arguments that make that layer (a classes= argument) and load_state_dict into it, or write "
                     "config() returning them")


def _build(meta: dict[str, Any]) -> Model:
    """The model a well-formed architecture record describes (ValueError or BuildError where it is not)."""
    if meta.get("format") == 1:
        layers = meta.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"field 'layers' is {type(layers).__name__}, expected a list of layers")
        built: list[Any] = []
        model = Sequential(*(from_record(d, f"layers[{i}]", built) for i, d in enumerate(layers)))
    else:
        model = from_record(meta.get("model"), "model")
    return _freeze_batch_norm(model, meta.get("frozen_batch_norm", []))


def _freeze_batch_norm(model: Any, names: Any) -> Any:
    """``model`` with its BatchNorm layers ``names`` frozen as ``xn.freeze_batch_norm`` froze them before the save
    (a model of the user's class is built again with BatchNorm where its constructor makes one)."""
    nodes = model.named_modules()
    if not isinstance(names, list) or not all(isinstance(name, str) and isinstance(nodes.get(name), (
            BatchNorm, FrozenBatchNorm2d)) for name in names):
        raise ValueError(f"field 'frozen_batch_norm' is {names!r}, expected a list of the dotted names of its "
                         "BatchNorm layers")
    return freeze_named(model, names, "xn.load") if names else model


def save_model(model: Any, path: Any, who: str = "model.save") -> None:
    """Write ``model``'s architecture, params and buffers to ``path`` (.npz) atomically, or into a binary file
    object at its position."""
    meta = architecture(model)  # before any array is read: an argument JSON cannot hold fails at once
    warn_unlisted(model, who, "are not in the file (xn.load builds them again with new weights)")
    arrays = {k: to_numpy(v) for k, v in model.state().items()}
    arrays[_CONFIG_KEY] = np.asarray(json.dumps(meta))
    save_npz(path, arrays, who)


def save(obj: Any, path: Any) -> None:
    """Write ``obj`` to ``path`` (.npz) atomically, as PyTorch's ``torch.save(obj, path)``; nothing is pickled.

    ``path`` may be a binary file object instead (``io.BytesIO``, a file opened ``"wb"``), as ``torch.save(obj,
    buffer)``: the same bytes are written at its position and it is flushed, neither closed nor moved back (the
    caller's), and not atomically (a path is: a temporary file, then a rename). A text stream is refused.

    - A model (``xn.Model``, ``xn.Sequential``; ``model.save(path)``): its architecture, params and buffers;
      ``xn.load(path, device=...)`` builds the model again, on any device.
    - A state dict or PyTorch's checkpoint dict (``{"epoch": 5, "model_state_dict": model.state_dict(),
      "optimizer_state_dict": optimizer.state_dict(), "loss": loss}``): a tree of dicts (str keys), lists, tuples,
      arrays of any backend (stored as NumPy arrays, PyTorch's bfloat16 as float32), None, bool, int, float,
      complex, str and NumPy scalars, which ``xn.load(path)`` gives back with its types (tuple or list, int or
      float, a NumPy scalar's dtype, each dict's key order). Anything else in it (an object, a function, a key
      that is not a str) is refused before anything is written, naming its place
      (``obj['optimizer_state_dict']['state']``) and its type.
    """
    if isinstance(obj, Model):
        save_model(obj, path, "xn.save")
    elif hasattr(obj, "params") and not isinstance(obj, (dict, list, tuple)):
        raise TypeError(f"xn.save: expected an xn.Model or xn.Sequential, got {type(obj).__name__}; wrap the layer: "
                        f"xn.Sequential({obj.name}(...)), or save its state_dict()")
    else:
        save_tree(path, obj, _host_array)


def _host_array(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array on the host where it is an array of any backend, else None."""
    return to_numpy(value) if is_array_api_obj(value) else None


def load(path: Any, device: Any = None, dtype: Any = None, *, map_location: Any = None,
         weights_only: bool | None = None, mmap: bool | None = None) -> Any:
    """What ``xn.save`` wrote to ``path``: a model (``xn.save(model, path)``, ``model.save(path)``) built again, or
    the values saved (``xn.save(model.state_dict(), path)``, a checkpoint dict), as PyTorch's ``torch.load``.
    Arrays and the model go on ``device`` (the host, NumPy, by default; ``"cuda"``, ``"cuda:1"``, ``"torch:cpu"``,
    an ``xn.Device``), PyTorch's ``map_location`` is the same argument (a device string, ``xn.Device`` or
    ``torch.device``, taken as its string); floats cast to ``dtype`` when given (``"float32"``: a float64 file onto
    a device without float64, such as JAX without ``jax_enable_x64``; cast on the host, as ``model.to(device,
    dtype=...)``; a tree's floating arrays only, not its numbers). ``weights_only`` (PyTorch's) may be True or
    False: nothing is ever unpickled, whichever. ``mmap`` (PyTorch's) may be True or False too: the same arrays
    come back either way, read whole (an ``.npz`` is a zip archive, which is not memory-mapped).

    Values come back as saved: dicts in their key order, lists, tuples, NumPy scalars of their dtype, arrays as
    writable NumPy arrays, or on ``device`` (NumPy's arrays of str or bytes stay on the host; an array found in
    several places was saved once and is one array again), so
    that ``model.load_state_dict(xn.load(path))`` and ``optimizer.load_state_dict(ckpt["optimizer_state_dict"])``
    take them.

    A training checkpoint (``xn.callbacks.ModelCheckpoint(path, full=True)``, or the one written on
    SIGTERM) loads as a model too: the model with the weights it had at the checkpoint's epoch, the state a
    resumed run starts from. The rest of the checkpoint is left out (the optimizer's state, the history, and the
    callbacks' arrays such as EarlyStopping's best weights); ``xn.train(..., resume_from=path)`` uses it.

    Validates fully before use: the format version, the record, and every array's shape and dtype (read from its
    header, before its data) against what the record says; no array may be missing or extra. A model's layers are
    built without drawing weights (``xn.init`` is left untouched), so a file that declares huge layers but does not
    hold them fails at once. A model of the user's own class is built again from the arguments it was built with;
    its class must be defined in this program (the error says what to import).
    Raises :class:`XpnetFileError` (a ValueError) naming the path and what is wrong.

    ``path`` may be a binary file object that reads and seeks instead (``io.BytesIO``, a file opened ``"rb"``), as
    ``torch.load(buffer)``: what one ``xn.save`` wrote is read from its position, checked as a file is, and the
    object is left open at its end, where the next ``xn.load`` reads what was saved after it. Errors name it
    (``<BytesIO>``). A stream that cannot seek (a pipe, a socket) is refused, as by ``torch.load``: read it into
    ``io.BytesIO`` first.
    """
    dev = _load_device(device, map_location)
    if weights_only is not None and not isinstance(weights_only, bool):
        raise TypeError(f"xn.load: weights_only must be True or False (nothing is unpickled either way), got "
                        f"{weights_only!r}")
    if mmap is not None and not isinstance(mmap, bool):
        raise TypeError(f"xn.load: mmap must be True or False (the arrays are read whole either way), got {mmap!r}")
    dtype = None if dtype is None else float_dtype_name(dtype, "xn.load")
    with NpzReader(path, _ANY_WHAT, "xn.load", file_objects=True) as reader:
        tree = reader.record(TREE_KEY)
        if tree is not None:
            reader.what = TREE_WHAT
            check_format(reader, tree, "format", TREE_FORMAT)
            return read_tree(reader, tree, lambda a: a if a.dtype.kind in "US" else  # str arrays stay on the host
                             to_device(a, dev, dtype=dtype if a.dtype.kind == "f" else None))
        meta, prefix = reader.record(_CONFIG_KEY), ""
        reader.what = _MODEL_WHAT
        if meta is None:
            meta, prefix = reader.record(CHECKPOINT_KEY), "model/"
            if meta is None:
                raise reader.error(_no_record(reader))
            reader.what = CHECKPOINT_WHAT
        check_format(reader, meta, "format", FORMATS)
        model = model_from_architecture(reader, meta)
        found = set(reader.names) - {_CONFIG_KEY} if not prefix else \
            {name for name in reader.names if name.startswith(prefix)}
        read_state(reader, model, {name: prefix + name for name in model.state()}, found)
    return model.to(dev, dtype=dtype)


def _load_device(device: Any, map_location: Any) -> Device:
    """The device of ``xn.load``'s ``device=`` or PyTorch's ``map_location=`` (one of them; neither: the host)."""
    if map_location is not None:
        if device is not None:
            raise TypeError("xn.load: give device= or map_location= (PyTorch's name for it), not both")
        if isinstance(map_location, dict) or callable(map_location):
            raise TypeError(f"xn.load: map_location takes a device ('cpu', 'cuda', 'cuda:0', a device object), got a "
                            f"{type(map_location).__name__}; torch.load's dict or function of storage locations has "
                            "no counterpart: xpnet puts every array on the one device given")
        device = map_location
    if device is None:
        return CPU
    if not isinstance(device, (str, Device)) and isinstance(getattr(device, "type", None), str):
        device = str(device)  # torch.device("cuda", 0) -> "cuda:0", as map_location's string
    return resolve_device(device)


def _no_record(reader: NpzReader) -> str:
    """Why a zip archive without an xpnet record is none of xpnet's files, and what reads it."""
    if any(name.endswith("/data.pkl") for name in reader.archive_names):
        return "it has no xpnet record; it is a file of PyTorch's torch.save, which xn.read_torch_file(path) reads"
    return ("it has no xpnet record (a model's architecture, a checkpoint's, or the values of xn.save(obj, path)); "
            "an archive of numpy.savez reads with numpy.load(path)")


def check_format(reader: NpzReader, meta: Any, field: str, known: int | tuple[int, ...]) -> None:
    """Raise unless ``meta[field]`` is a format version (``known``: one, or a tuple of them) this xpnet reads."""
    if not isinstance(meta, dict):
        raise reader.error(f"its record is a {type(meta).__name__}, expected a JSON object")
    known = known if isinstance(known, tuple) else (known,)
    version = meta.get(field)
    if isinstance(version, bool) or version not in known:
        which = f"format {known[0]} only" if len(known) == 1 else f"formats {', '.join(map(str, known))}"
        raise reader.error(f"field {field!r} is {version!r}; this xpnet reads {which} (a file "
                           "from another xpnet version?)")


def model_from_architecture(reader: NpzReader, meta: dict[str, Any]) -> Model:
    """The model the architecture record ``meta`` describes (its ``"layers"`` in format 1, its
    ``"model"`` in format 2), built without drawing any weights."""
    with _init.skip_init():
        try:
            model = _build(meta)
        except BuildError as exc:  # a model file whose class, as this program defines it, refuses the arguments
            raise XpnetFileError(f"{reader.source} is an xpnet model file, but its {exc}; the class must take the "
                                 "arguments it was built with (or write config() and from_config())") from None
        except ValueError as exc:
            if isinstance(exc, XpnetFileError):
                raise
            raise reader.error(str(exc)) from None
    if not isinstance(model, Model):
        raise reader.error(f"field 'model' describes a {model.name} layer, not a model")
    _freeze(reader, model, meta.get("frozen", []))
    _evaluating(reader, model, meta.get("eval", []))
    return model


def _evaluating(reader: NpzReader, model: Model, names: Any) -> None:
    """Put the nodes the record names in evaluation mode (``model.eval()`` before the save), after checking every
    name; the others stay in training mode, a new model's."""
    nodes = model.named_modules()
    if not isinstance(names, list) or not all(isinstance(name, str) and name in nodes for name in names):
        raise reader.error(f"field 'eval' is {names!r}, expected a list of the dotted names of its layers")
    for name in names:
        nodes[name].training = False


def _freeze(reader: NpzReader, model: Model, frozen: Any) -> None:
    """Freeze the nodes the record names (``requires_grad_(False)`` as saved), after checking every name."""
    nodes = model.named_modules()
    if not isinstance(frozen, list) or not all(isinstance(name, str) and name in nodes for name in frozen):
        raise reader.error(f"field 'frozen' is {frozen!r}, expected a list of the dotted names of its layers")
    for name in frozen:
        nodes[name]._frozen = True


def stored_dtype(reader: NpzReader, names: list[str]) -> Any:
    """The one real floating dtype the arrays ``names`` hold (from their headers).

    It may differ from the layers' ``dtype`` record: a model cast with ``model.to(dtype=...)`` was
    saved with its old record by earlier versions; one dtype for all arrays is what a model can use.
    """
    found = {reader.header(n)[1].newbyteorder("=") for n in names}
    if len(found) > 1:
        raise reader.error(f"its arrays mix dtypes {sorted(d.name for d in found)}; a model holds one float dtype")
    for dtype in found:
        if dtype.kind != "f":
            raise reader.error(f"its arrays hold {dtype.name}, expected float32 or float64")
        return dtype
    return None


def read_state(reader: NpzReader, model: Any, names: dict[str, str], found: set[str]) -> None:
    """Put the file's arrays ``names[param]`` into ``model``'s params and buffers, after checking
    that ``found`` (the file's array names) holds exactly those names, then each shape and dtype."""
    expected = set(names.values())
    if expected != found:
        raise reader.error(f"its arrays do not match its architecture: missing {sorted(expected - found)}, "
                           f"unexpected {sorted(found - expected)}")
    state = model.state()
    dtype = stored_dtype(reader, list(names.values()))
    for param, stored in names.items():  # every header before any data
        reader.expect(stored, tuple(state[param].shape), dtype)
    arrays = {param: reader.array(stored, tuple(state[param].shape), dtype) for param, stored in names.items()}
    for param, value in arrays.items():
        model.set_param(param, value)
