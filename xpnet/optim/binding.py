"""How an optimizer is built and tied to a model: the book's ``SGD(0.01)``, then ``step(model)``; or
PyTorch's ``SGD(model, lr=0.01)`` / ``SGD(model.parameters(), lr=0.01)`` (also ``params=``), bound to that
model from the start so that ``step()`` needs no argument; or PyTorch's list of param groups, ``SGD([{'params':
model.base.parameters()}, {'params': model.head.parameters(), 'lr': 1e-3}], lr=1e-2)`` (``grouped``). The
metaclass takes the model out of the arguments before ``__init__`` runs, so each optimizer's ``__init__`` keeps
the book's signature. Built PyTorch's way (``model.parameters()`` or param groups), ``weight_decay`` is PyTorch's,
on every parameter (``weight_decay_on="all"`` unless given), and a hyperparameter left out takes torch.optim's
default where it differs from the book's (SGD's lr 1e-3, AdaGrad's eps 1e-10); from the learning rate (the book's)
or the model itself, the book's L2 on weights only and the book's defaults."""

from __future__ import annotations

import inspect
from typing import Any

from .._user import is_real
from .param_groups import check_fixed

__all__ = ["TakesAModelFirst", "owning_model", "groups_hint"]


class TakesAModelFirst(type):
    """Builds an optimizer from the book's arguments (``SGD(0.01)``) or PyTorch's (``SGD(model.parameters(),
    lr=0.01)``, also ``params=``): a first argument that is a model (it has ``named_params``), carries one
    as ``.model`` (what ``model.parameters()`` returns) or is any other collection is taken out of the
    arguments, and the new optimizer is bound to that model (a collection without one is refused); a list of
    dicts makes its param groups. ``optimizer.defaults`` keeps the constructor's hyperparameters, as PyTorch's."""

    def __init__(cls, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # help() and inspect.signature show __init__'s arguments, not this __call__'s *args, **kwargs.
        init = inspect.signature(cls.__init__)
        cls.__signature__ = init.replace(parameters=list(init.parameters.values())[1:])

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        target = kwargs.pop("params", None)
        kwargs = _pytorch_only_keywords(cls, kwargs)
        if args and _is_params(args[0]):
            if target is not None:
                raise TypeError(f"{cls.__name__}: the model was given twice (first argument and params=)")
            target, args = args[0], args[1:]
        _refuse_torch_overflow(cls, args)
        groups = target if _is_groups(target) else None
        model = None if target is None or groups is not None else _model_of(cls.__name__, target)
        if groups is not None or (model is not None and model is not target):  # model.parameters(): PyTorch's
            _refuse_torch_order(cls, args)
            kwargs = _as_pytorch(cls, args, kwargs)
        optimizer = super().__call__(*args, **kwargs)
        optimizer.defaults = optimizer.hyperparams()
        if groups is not None:
            optimizer.take_groups(list(groups))
        elif model is not None:
            optimizer.bind(model)
            optimizer._built_with_model = True
        return optimizer


def _pytorch_only_keywords(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` less torch.optim's keywords that xpnet keeps at PyTorch's default (``cls.PYTORCH_ONLY``:
    ``maximize``, ``foreach``, ``fused``...) and the constructor does not take: given at that default they are
    dropped, as a param group's dict drops them; another value is refused, saying why (``maximize=True`` would
    otherwise fail as an unexpected keyword, with no word of what to do)."""
    fixed = getattr(cls, "PYTORCH_ONLY", {})
    if not any(key in fixed for key in kwargs):  # the constructor's signature read only where it may decide
        return kwargs
    kept = {}
    for key, value in kwargs.items():
        if key not in fixed or _reader(cls, key) is not None:
            kept[key] = value
        else:
            check_fixed(fixed, key, value, f"{cls.__name__}: {key}={value!r}")
    return kept


def _refuse_torch_order(cls: type, args: tuple[Any, ...]) -> None:
    """Refuse a positional argument that torch.optim's constructor of the same name reads as another
    (``cls.TORCH_ORDER``, its arguments after params: ``Adagrad(params, lr, lr_decay, ...)`` where xpnet's
    AdaGrad has ``eps`` second), given by a user building it PyTorch's way, which would mean something else."""
    order = getattr(cls, "TORCH_ORDER", None)
    if order is None:
        return
    names = _positional_names(cls)
    for i, value in enumerate(args[:min(len(order), len(names))]):
        if names[i] != order[i]:
            after = names[i - 1] if i else "params"
            raise TypeError(f"{cls.__name__}: the argument after {after} is {names[i]} here, where torch.optim's is "
                            f"{order[i]}: got {value!r} by position; give it and those after it by name "
                            f"({names[i]}={value!r} for xpnet's, {order[i]}= for PyTorch's)")


def _refuse_torch_overflow(cls: type, args: tuple[Any, ...]) -> None:
    """Refuse more positional arguments than the constructor takes where torch.optim's of the same name takes
    them (``cls.TORCH_POSITIONAL``: RMSprop's ``(params, lr, alpha, eps, weight_decay, momentum, centered)``,
    where xpnet's has ``weight_decay_on`` fifth and the rest by keyword), naming each value's keyword: Python's
    own error counted the arguments only."""
    order = getattr(cls, "TORCH_POSITIONAL", None)
    if order is None:
        return
    names = _positional_names(cls)  # a subclass's own, or through its *args its base's
    if len(args) <= len(names) or len(args) > len(order):
        return
    first = next((i for i, (ours, theirs) in enumerate(zip(names, order)) if ours != theirs), len(names))
    by_name = ", ".join(f"{key}={value!r}" for key, value in zip(order[first:], args[first:]))
    raise TypeError(f"{cls.__name__}: {len(args)} arguments by position (after the parameters), where xpnet's takes "
                    f"{len(names)} ({', '.join(names)}); torch.optim's order ({', '.join(order)}) goes by name "
                    f"here from {order[first]} on: {by_name}")


def _as_pytorch(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with PyTorch's defaults for what was not given, built PyTorch's way
    (``SGD(model.parameters(), lr, momentum=0.9, weight_decay=1e-4)``, or param groups): ``weight_decay_on="all"``
    where the optimizer takes it (weight_decay means PyTorch's, on every parameter: biases, the norms' gamma and
    beta, not the book's on weights only), and the ``TORCH_DEFAULTS`` of the nearest class that has them where
    torch.optim's default differs from the book's (SGD's lr 1e-3, not 0.01; AdaGrad's eps 1e-10, not 1e-7), each
    where the constructor that reads it keeps that class's default (:func:`_reader`: a subclass's own default,
    ``def __init__(self, lr=0.05)``, stays; an argument no constructor takes is left out)."""
    owner = next((k for k in cls.__mro__ if "TORCH_DEFAULTS" in vars(k)), None)
    defaults = {}
    if owner is not None:
        book = inspect.signature(owner.__init__).parameters
        for key, value in owner.TORCH_DEFAULTS.items():
            reader = _reader(cls, key)
            if reader is not None and reader.default == book[key].default:
                defaults[key] = value
    if _reader(cls, "weight_decay_on") is not None:
        defaults["weight_decay_on"] = "all"
    given = {*_positional_names(cls)[:len(args)], *kwargs}
    return {**{k: v for k, v in defaults.items() if k not in given}, **kwargs}


def _reader(cls: type, name: str) -> inspect.Parameter | None:
    """The parameter ``name`` of the constructor that reads it, given by keyword to ``cls``: ``cls.__init__``'s, or
    where that passes its ``**kwargs`` on (a subclass of one's own, ``def __init__(self, *args, **kwargs)``), its
    base's; None where none takes it."""
    for kind in cls.__mro__:
        if "__init__" not in vars(kind):
            continue
        params = inspect.signature(kind.__init__).parameters
        if name in params and params[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                    inspect.Parameter.KEYWORD_ONLY):
            return params[name]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
    return None


def _positional_names(cls: type) -> list[str]:
    """The names under which ``cls``'s constructor reads arguments given by position (after the model): those of the
    first ``__init__`` in its MRO that takes no ``*args`` (a subclass's ``*args`` are passed on to its base's)."""
    for kind in cls.__mro__:
        if "__init__" not in vars(kind):
            continue
        params = list(inspect.signature(kind.__init__).parameters.values())[1:]  # self
        if not any(p.kind is p.VAR_POSITIONAL for p in params):
            return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return []


def _is_params(first: Any) -> bool:
    """Whether an optimizer's first argument stands for the parameters (else it is the learning rate,
    whose check then names what came)."""
    return not is_real(first) and (hasattr(first, "named_params") or hasattr(first, "model")
                                   or (hasattr(first, "__iter__") and not isinstance(first, str)))


def _is_groups(target: Any) -> bool:
    """Whether ``target`` is PyTorch's list of param groups (dicts)."""
    return isinstance(target, (list, tuple)) and bool(target) and any(isinstance(g, dict) for g in target)


def groups_hint(name: str, index: int, params: Any) -> str:
    """Why param group ``index`` cannot be taken: its ``params`` name no layer of a model."""
    return (f"{name}: PyTorch's parameter groups are taken where each names a layer, but param group {index}'s "
            f"'params' is a {type(params).__name__}; a group updates a layer (or a model) as a whole, given as "
            f"layer.parameters() or the layer itself, so that its parameters are found by name; a bare array "
            f"(net.weight) cannot be. For d2l's [{{'params': net.weight, 'weight_decay': wd}}, "
            f"{{'params': net.bias}}]: built from the model itself, xpnet's weight_decay decays the weights only "
            f"(W, the recurrent layers' Wx and Wh; not biases, nor the norms' gamma and beta), so that is "
            f"{name}(model, lr=..., weight_decay=wd); to leave a part untrained, part.requires_grad_(False)"
            f"{_BY_NAME if isinstance(params, (list, tuple)) else ''}")


# The transfer-learning tutorial's groups: [p for name, p in model.named_parameters() if 'fc' in name], the rest.
_BY_NAME = ("; parameters picked by name ([p for name, p in model.named_parameters() if 'fc' in name] and those "
            "without 'fc') are one group per layer: [{'params': model.fc.parameters(), 'lr': 1e-2}] + [{'params': "
            "child.parameters(), 'lr': 1e-3} for name, child in model.named_children().items() if name != 'fc']")


def owning_model(target: Any) -> Any:
    """``target`` when it is a model, the model ``target = model.parameters()`` came from, else None."""
    if hasattr(target, "named_params"):
        return target
    owner = getattr(target, "model", None)
    return owner if owner is not None and hasattr(owner, "named_params") else None


def _model_of(name: str, target: Any) -> Any:
    """The model an optimizer is built for: ``target`` itself, or ``target.model``."""
    model = owning_model(target)
    if model is not None:
        return model
    hint = (f"; to train a part only, freeze the rest (model.backbone.requires_grad_(False)) and pass the model: "
            f"{name} skips frozen parameters") if isinstance(target, filter) else ""
    if isinstance(target, (list, tuple)) and any(hasattr(a, "shape") for a in target):
        hint += ("; to optimize an array itself (style transfer's input image), make it a parameter of a model "
                 "of your own: self.params['img'] = img, forward running the frozen network on it, backward "
                 "setting self.grads['img'] = self.net.backward(dy); then pass that model")
    raise TypeError(f"{name}: the first argument is the learning rate or the model to update, as in "
                    f"{name}(0.01), {name}(model, lr=0.01) or {name}(model.parameters(), lr=0.01); got a "
                    f"{type(target).__name__} (xpnet updates a model's named parameters, not a list of arrays)"
                    f"{hint}")
