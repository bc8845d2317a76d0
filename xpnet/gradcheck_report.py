"""What :func:`xpnet.gradcheck` returns: a row per checked tensor and the report that prints them as a table."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GradcheckError", "GradcheckReport", "GradcheckRow"]


@dataclass(frozen=True)
class GradcheckRow:
    """The result for one tensor (a parameter such as ``"1.W"``, or ``"input"``), or for a layer
    that wrote into an array it was given.

    ``max_abs_err``/``max_rel_err`` are over the checked entries not at a kink (``kinks`` counts those);
    ``worst_index`` is the entry furthest outside its tolerance (None in fast mode, which checks a direction), where
    ``numerical`` and ``analytic`` are read. ``status`` is ``"ok"``, ``"FAIL"`` or ``"FAIL: <why>"``.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int, ...] | None
    numerical: float
    analytic: float
    kinks: int
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class GradcheckReport:
    """What :func:`gradcheck` found: one row per parameter and the input. ``print(report)`` shows a table."""

    rows: list[GradcheckRow]
    eps: float
    atol: float
    rtol: float
    fast: bool
    max_entries: int | None
    device: str
    forward_passes: int
    located: tuple[str, ...] = ()  # when a model fails: which of its layers is wrong (gradcheck_locate)
    frozen: tuple[str, ...] = ()  # the parameters not checked: requires_grad_(False) froze them, they have no gradient

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def __bool__(self) -> bool:
        """``report.ok``: ``assert xn.gradcheck(...)`` fails where a row fails (PyTorch's gradcheck gives True)."""
        return self.ok

    @property
    def failures(self) -> list[GradcheckRow]:
        return [row for row in self.rows if not row.ok]

    def __getitem__(self, name: str) -> GradcheckRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r} in the gradcheck report; rows: {[row.name for row in self.rows]}")

    def __str__(self) -> str:
        if self.fast:
            mode = "one random direction per tensor (fast)"
        elif self.max_entries is None:
            mode = "every entry"
        else:
            mode = f"at most {self.max_entries} random entries per tensor"
        header = ("name", "shape", "checked", "kinks", "worst index", "numerical", "analytic", "abs err",
                  "err/tol", "status")
        table = [header] + [self._cells(row) for row in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        worst = "the checked direction" if self.fast else "the entry with the largest err/tol, kinks aside"
        lines = [f"gradcheck in float64 on {self.device}: eps={self.eps:g}, atol={self.atol:g}, "
                 f"rtol={self.rtol:g}, {mode}",
                 "an entry passes when err/tol = |numerical - analytic| / (atol + rtol * |numerical|) <= 1",
                 f"each row shows {worst}"]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
        failed = self.failures
        if failed:
            lines.append(f"FAILED: {', '.join(row.name for row in failed)} "
                         f"({self.forward_passes} forward passes)")
            lines += self.located
        else:
            lines.append(f"OK: {len(self.rows)} row(s), {self.forward_passes} forward passes")
        if self.frozen:
            lines.append(f"not checked, frozen (requires_grad_(False)): {', '.join(self.frozen)}")
        return "\n".join(lines)

    def _cells(self, row: GradcheckRow) -> tuple[str, ...]:
        """One table line: every figure is about the row's worst entry, the one the verdict hinges on."""
        index = "-" if row.worst_index is None else str(row.worst_index)
        compared = not row.status.startswith("FAIL:")  # a mutation row holds values before/after, not gradients
        err = abs(row.numerical - row.analytic) if compared else math.nan
        tol = self.atol + self.rtol * abs(row.numerical)
        ratio = err / tol if tol > 0 else (math.inf if err > 0 else err)
        return (row.name, str(row.shape), str(row.checked), str(row.kinks), index, _num(row.numerical),
                _num(row.analytic), _num(err), "-" if math.isnan(ratio) else f"{ratio:.3g}", row.status)


def _num(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3e}"


class GradcheckError(AssertionError):
    """Raised by :func:`xpnet.testing.assert_gradients_ok`; the message is the report's table, ``report`` the report.

    Also by ``gradcheck(..., raise_exception=True)``."""

    def __init__(self, report: GradcheckReport):
        super().__init__(str(report))
        self.report = report
