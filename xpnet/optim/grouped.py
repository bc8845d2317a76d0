"""Several param groups, PyTorch's ``SGD([{'params': model.base.parameters()}, {'params':
model.classifier.parameters(), 'lr': 1e-3}], lr=1e-2, momentum=0.9)`` and ``add_param_group``.

A group covers one node of the model tree (``sub.parameters()`` carries it as ``.model``; a layer or model
itself is taken too) and holds its hyperparameters: the constructor's keywords (``optimizer.defaults``),
overridden by the dict's keys, checked as the constructor checks them. Any other key is the user's own
(``'name': 'head'``), kept as given and ignored by the step, as PyTorch's, unless it looks like a misspelt
hyperparameter or another optimizer's (:mod:`~xpnet.optim.group_keys`). A parameter in two groups is refused,
as PyTorch refuses it. How a step of several groups goes:

1. The root: the model given to ``step(model)`` (``xn.train`` gives it), else the one an earlier step bound;
   without one, each group's own node is stepped, its state named ``param_groups.<i>.<name>`` until a root
   is bound (the names in the root then replace those). A parameter of the root in no group is not updated.
2. Every group's gradients are checked (``Optimizer._collect``) before any parameter changes.
3. Each group's parameters update with its hyperparameters put in effect on the optimizer (the first group's
   are the optimizer's own attributes), and the first group's are put back after.

State stays per parameter (by name), so it survives; ``zero_grad()`` clears and arms each group's node.
``state_dict()`` keeps each group's hyperparameters and own keys (the values themselves, as PyTorch's);
``load_state_dict()`` puts back the hyperparameters and replaces each group's own keys with the saved ones.
"""

from __future__ import annotations

import copy
from typing import Any

from ..layers.zero_grad import STEPPED, TICKS, armed, overwritten
from .binding import groups_hint, owning_model
from .group_keys import check_own_key
from .hyperparams import positive
from .param_groups import ParamGroup, check_fixed
from .step_plan import Seen

__all__ = ["GroupedSteps"]


class GroupedSteps:
    """The part of :class:`~xpnet.optim.base.Optimizer` that handles several param groups."""

    _several_groups = False  # more than one group: step() goes through _step_groups
    ONE_GROUP_ONLY: str | None = None  # why this optimizer takes one group only (LBFGS), else None

    def take_groups(self, specs: list[Any]) -> None:
        """Build the groups from PyTorch's list of dicts (the metaclass calls it, after ``__init__``)."""
        if not specs:
            raise ValueError(f"{self.name}: the list of param groups is empty; pass the model or its parameters")
        built = [self._group_from(spec, i) for i, spec in enumerate(specs)]
        if len(built) > 1 and self.ONE_GROUP_ONLY:
            raise ValueError(f"{self.name}: {self.ONE_GROUP_ONLY}")
        _check_disjoint(self.name, [node for node, _, _, _ in built])
        node, values, _, _ = built[0]
        self._put(values)
        if len(built) == 1:  # one group: the optimizer of one model, as SGD(node, ...) builds it
            self.bind(node)
            self._built_with_model = True
            self._param_groups = [ParamGroup(self)]
        else:
            self._param_groups = [ParamGroup(self, node)] + [ParamGroup(self, n, v) for n, v, _, _ in built[1:]]
            self._several_groups = self._built_with_model = True
        for group, (_, _, lr, own) in zip(self._param_groups, built):
            group.initial_lr, group.own = lr, own

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """PyTorch's: another group, ``{'params': layer.parameters(), 'lr': ...}``, its missing keys from
        ``optimizer.defaults`` (the constructor's); a parameter already in a group is refused."""
        groups = self.param_groups
        if self.ONE_GROUP_ONLY:
            raise ValueError(f"{self.name}.add_param_group: {self.ONE_GROUP_ONLY}")
        node, values, initial_lr, own = self._group_from(param_group, len(groups))
        if not self._several_groups:
            first = self._bound()
            if first is None:
                raise RuntimeError(f"{self.name}.add_param_group: the optimizer has no parameters yet to add to; "
                                   f"build it with the first group's, {self.name}(model.base.parameters(), ...)")
            _check_disjoint(self.name, [first, node])
            groups[0].node = first  # the model it was built with is now the first group's node, not the root
            self._rename([""], [_ROOTLESS.format(0)])
            self._model = None
            self._several_groups = True
        else:
            _check_disjoint(self.name, [g.node for g in groups] + [node])
            root = self._bound()
            if root is not None:
                self._prefix(root, node, len(groups))  # refused unless it is inside the root
        group = ParamGroup(self, node, values)
        group.initial_lr, group.own = initial_lr, own
        self._param_groups.append(group)

    def _group_from(self, spec: Any, index: int) -> tuple[Any, dict[str, Any], float | None, dict[str, Any]]:
        """(node, hyperparameters checked as the constructor checks them, initial_lr, the keys of the user's own)
        of one group's dict."""
        if not isinstance(spec, dict) or "params" not in spec:
            raise TypeError(f"{self.name}: param group {index} must be a dict with a 'params' key, "
                            f"{{'params': layer.parameters(), 'lr': ...}}, got {spec!r:.80}")
        node = owning_model(spec["params"])
        if node is None:
            raise TypeError(groups_hint(self.name, index, spec["params"]))
        settings, fixed, initial_lr, own = dict(self.defaults), self.PYTORCH_ONLY, None, {}
        for key, value in spec.items():
            if key == "params":
                continue
            if key == "initial_lr":
                initial_lr = value
            elif key in fixed:
                check_fixed(fixed, key, value, f"{self.name}: param group {index}: {key}={value!r}")
            elif key in settings:
                settings[key] = value
            else:
                check_own_key(self, key, f"{self.name}: param group {index}")
                own[key] = value
        values = type(self)(**settings).hyperparams()
        if initial_lr is not None:
            initial_lr = positive("initial_lr", initial_lr, self, allow_zero=True)
        return node, values, initial_lr, own

    def _put(self, values: dict[str, Any]) -> None:
        """Put a group's hyperparameters in effect on the optimizer's attributes (unchecked: checked when set)."""
        for key, value in values.items():
            self.__dict__["_lr" if key == "lr" else key] = value

    # -- the step ----------------------------------------------------------------------------------

    def _step_groups(self, model: Any) -> None:
        """``step(model)`` with several groups (the module's docstring says how it goes)."""
        if model is not None:
            if not hasattr(model, "named_params"):
                raise TypeError(f"{self.name}.step: expected the model to update (an xn.Sequential), got "
                                f"{type(model).__name__}")
            self.bind(model)
        root = self._bound()
        if root is None and self._unchecked:  # a state loaded, and no root to name it in: the groups' own names
            self._check_loaded(self.state, None, f"{self.name}.step: the state given to load_state_dict")
        groups = self._param_groups
        works, adding, found = [], False, {}
        for i, group in enumerate(groups):
            prefix = _ROOTLESS.format(i) if root is None else self._prefix(root, group.node, i)
            adds = armed(group.node) or armed(root)
            adding = adding or adds
            trained: list[dict[str, Any]] = []
            works.append(self._collect(group.node, prefix, adds, trained))
            found.update((prefix + k, p) for k, p in trained[0].items())
        seen = self.__dict__.pop("_seen", None)
        if seen is not None and self.state:  # a layer removed since (del model.body[0]): the state follows renamed ones
            self._follow_renamed(seen.arrays, found)
        self._seen = Seen.of(found)
        if all(work is None for work in works):  # no backward since zero_grad(): PyTorch's step skips them all
            return
        if root is not None:  # two backward calls of the model since the last step, the first's gradients lost
            own = root.__dict__
            refused = not adding and any(works) and overwritten(root, self._zeroed)
            own[STEPPED] = TICKS[0]
            if refused:
                raise RuntimeError(self._overwritten(root))
        works = [work or [] for work in works]
        self._advance([item for work in works for item in work])
        first = self.hyperparams()
        try:
            for group, work in zip(groups, works):
                if group.values is not None:
                    self._put(group.values)
                self._apply(work)
        finally:
            self._put(first)

    def _bind_root(self, model: Any) -> None:
        """``bind`` with several groups: ``model`` must hold every group's node; the state named without a
        root takes the names in it."""
        new = [self._prefix(model, group.node, i) for i, group in enumerate(self._param_groups)]
        self._rename([_ROOTLESS.format(i) for i in range(len(new))], new)

    def _prefix(self, root: Any, node: Any, index: int) -> str:
        """The dotted name of ``node`` in ``root`` and a dot ("" for the root itself)."""
        if node is root:
            return ""
        modules = root.named_modules() if hasattr(root, "named_modules") else {}
        name = next((k for k, v in modules.items() if v is node), None)
        if name is None:
            raise ValueError(f"{self.name}: param_groups[{index}] updates a {type(node).__name__} that is not "
                             f"inside the {type(root).__name__} given to step (or xn.train); pass the model "
                             "that holds the layers of every group")
        return name + "."

    def _rename(self, old: list[str], new: list[str]) -> None:
        """The state of each parameter named ``old[i] + rest`` is renamed ``new[i] + rest`` (the parameters the last
        step found, by the old names, are forgotten)."""
        self.__dict__.pop("_seen", None)
        for store in (self.state, self.skipped, self.scalars):
            renamed = _renamed(store, old, new)
            store.clear()
            store.update(renamed)

    def _group_state_names(self, state: dict[str, Any], root: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """``state`` by the names it takes in ``root`` (None: no root), and every group's parameters by those
        names: what a loaded state is held against (``Optimizer._check_loaded``)."""
        prefixes = [_ROOTLESS.format(i) if root is None else self._prefix(root, group.node, i)
                    for i, group in enumerate(self._param_groups)]
        params = {prefix + k: p for prefix, group in zip(prefixes, self._param_groups)
                  for k, p in group.node.named_params().items()}
        return _renamed(state, [_ROOTLESS.format(i) for i in range(len(prefixes))], prefixes), params

    # -- checkpoints -------------------------------------------------------------------------------

    def groups_state(self) -> list[dict[str, Any]]:
        """Each group's hyperparameters (and ``initial_lr`` where set) and its own keys, for ``state_dict()``."""
        return [{**g.hyperparams(), **({} if g.initial_lr is None else {"initial_lr": g.initial_lr}), **g.own}
                for g in self.param_groups]

    def check_group_count(self, saved: Any) -> None:
        """Raise unless ``saved`` (a state's ``param_groups``) holds as many groups as this optimizer."""
        if not isinstance(saved, list) or len(saved) != len(self.param_groups):
            count = len(saved) if isinstance(saved, list) else 1
            raise ValueError(f"{self.name}.load_state_dict: the state is of {count} param group(s), this "
                             f"optimizer has {len(self.param_groups)}; build it with the groups it was saved with")

    def load_groups(self, saved: Any) -> None:
        """Take up ``groups_state()``'s list: the same number of groups, each hyperparameter checked as when set;
        the saved own keys (a copy) replace each group's, as PyTorch's saved groups replace its own."""
        groups = self.param_groups
        self.check_group_count(saved)
        known = {*self.hyperparams(), *self.PYTORCH_ONLY, "initial_lr"}
        owns = [{k: v for k, v in values.items() if k not in known} for values in saved]
        for i, own in enumerate(owns):
            for key in own:
                check_own_key(self, key, f"{self.name}.load_state_dict: param group {i}")
        for group, values, own in zip(groups, saved, owns):
            for key, value in values.items():
                if key not in own:
                    group[key] = tuple(value) if isinstance(value, list) else value
            group.own = copy.deepcopy(own)


_ROOTLESS = "param_groups.{}."  # the names of a group's state while no root model is bound


def _renamed(store: dict[str, Any], old: list[str], new: list[str]) -> dict[str, Any]:
    """``store`` with each key ``old[i] + rest`` named ``new[i] + rest`` (the first ``old`` it starts with)."""
    out = {}
    for key, value in store.items():
        a = next((a for a in old if key.startswith(a)), None)
        out[key if a is None else new[old.index(a)] + key[len(a):]] = value
    return out


def _check_disjoint(who: str, nodes: list[Any]) -> None:
    """Refuse a parameter in two groups, as PyTorch's "some parameters appear in more than one parameter group"."""
    owner: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for p in node.named_params().values():
            j = owner.setdefault(id(p), i)
            if j != i:
                raise ValueError(f"{who}: some parameters appear in more than one parameter group (groups {j} "
                                 f"and {i}: a {type(nodes[i]).__name__} is in both, or inside the other's); give "
                                 "each layer to one group")
