"""The mixture spec and its solver: how many units (bytes or tokens) of each group go out.

A group is a domain (`wikipedia`-like sources share one: `encyclopedia`) or, when the mixture's
keys say `lang/domain`, a language × domain pair. Targets are shares of the output budget, given
per group or by temperature (p ∝ n^α over the groups present). Limits, after OLMo-core's
mixture spec: `max_epochs` (how often a group's data may be seen; default 4, after Muennighoff
et al. 2023) and `max_share`. A group whose target exceeds its limit is an error that says what
it has and what it needs (`on_shortfall: error`), or is held at its limit and the shortfall spread
over the other groups in proportion to their shares (`redistribute`, water-filling until no group
is over its limit). Data is never invented: when every group is at its limit, the output is
smaller than the budget and the report says by how much.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the default temperature when no mixture is given: p ∝ n^0.7 lifts small domains, spares big ones
DEFAULT_TEMPERATURE = 0.7
SHARE_TOLERANCE = 1e-6


class GroupSpec(BaseModel):
    """One mixture entry: a target share and optional per-group limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(..., ge=0, le=1, description="target share of the output budget")
    max_epochs: float | None = Field(None, gt=0, description="most passes over this group's data (default: the section's)")
    max_share: float | None = Field(None, gt=0, le=1, description="most of the output this group may take")


class Budget(BaseModel):
    """The output size: exactly one of bytes or tokens, positive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bytes: int | None = Field(None, gt=0, description="UTF-8 bytes of text in the output")
    tokens: int | None = Field(None, gt=0, description="tokens in the output (counted with `tokenizer`, else bytes / bytes_per_token)")

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        if (self.bytes is None) == (self.tokens is None):
            raise ValueError("give exactly one of budget.bytes or budget.tokens")
        return self


class ShortfallError(ValueError):
    """A group cannot reach its target within its limits (policy `error`)."""


@dataclass
class GroupPlan:
    """What the solver decided for one group, in budget units (bytes or tokens)."""

    group: str
    available: float          # units in the input
    target_share: float       # the share asked for (after temperature / normalisation)
    target: float             # target_share × budget
    max_epochs: float
    max_share: float | None
    planned: float            # units to output (≤ available × max_epochs, ≤ max_share × budget)
    shortfall: float          # target − planned when positive (what could not be met)
    limited_by: str | None    # "max_epochs", "max_share" or None

    @property
    def epochs(self) -> float:
        return self.planned / self.available if self.available else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["epochs"] = self.epochs
        return d


def temperature_shares(available: dict[str, float], alpha: float) -> dict[str, float]:
    """p_g ∝ n_g^α over the groups with data (α = 1: natural proportions, α → 0: uniform)."""
    weights = {g: n ** alpha for g, n in available.items() if n > 0}
    total = sum(weights.values())
    return {g: (weights.get(g, 0.0) / total if total else 0.0) for g in available}


def solve(available: dict[str, float], shares: dict[str, float], budget: float, *,
          max_epochs: dict[str, float], max_share: dict[str, float | None], policy: str) -> dict[str, GroupPlan]:
    """Units per group meeting `shares` of `budget` within each group's limits.

    `available`: units per group in the input (every group of `shares` must be present, with
    data when its share is positive); `policy`: "error" or "redistribute".
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    for g, s in shares.items():
        if s > 0 and available.get(g, 0) <= 0:
            raise ShortfallError(f"mixture.{g}: target share {s:.4g} but the input has no documents of {g!r}")
    caps: dict[str, float] = {}
    why: dict[str, str] = {}
    for g in shares:
        by_epochs = available.get(g, 0.0) * max_epochs[g]
        ms = max_share.get(g)
        by_share = ms * budget if ms is not None else math.inf
        caps[g] = min(by_epochs, by_share)
        why[g] = "max_epochs" if by_epochs <= by_share else "max_share"
    targets = {g: shares[g] * budget for g in shares}
    over = [g for g in shares if targets[g] > caps[g] * (1 + 1e-9) + 1e-9]
    if over and policy == "error":
        lines = []
        for g in over:
            lines.append(f"{g}: needs {targets[g]:,.0f} units ({shares[g]:.2%} of {budget:,.0f}) but has "
                         f"{available.get(g, 0):,.0f} units, at most {caps[g]:,.0f} with {why[g]} "
                         f"(max_epochs {max_epochs[g]:g}" + (f", max_share {max_share[g]:g}" if max_share.get(g) else "") + ")")
        raise ShortfallError("mixture cannot be met (on_shortfall: error): " + "; ".join(lines)
                             + ". Lower these targets, raise their limits, or set on_shortfall: redistribute")
    # water-filling: fix the groups over their cap at the cap, spread the rest over the others
    planned: dict[str, float] = {}
    # lists, not sets: the float sums below add in one order in every process (a set of strings
    # iterates in PYTHONHASHSEED order)
    free = [g for g in shares if shares[g] > 0]
    for g in shares:
        if shares[g] <= 0:
            planned[g] = 0.0
    while free:
        remaining = budget - sum(planned.values())
        weight = sum(shares[g] for g in free)
        alloc = {g: remaining * shares[g] / weight for g in free}
        capped = [g for g in free if alloc[g] > caps[g] * (1 + 1e-12)]
        if not capped:
            planned.update(alloc)
            break
        for g in capped:
            planned[g] = caps[g]
        free = [g for g in free if g not in capped]
    out: dict[str, GroupPlan] = {}
    for g in shares:
        p = max(0.0, planned.get(g, 0.0))
        limited = why[g] if p >= caps[g] * (1 - 1e-12) and shares[g] > 0 and p < targets[g] * (1 - 1e-12) else None
        out[g] = GroupPlan(group=g, available=float(available.get(g, 0.0)), target_share=shares[g], target=targets[g],
                           max_epochs=max_epochs[g], max_share=max_share.get(g), planned=p,
                           shortfall=max(0.0, targets[g] - p), limited_by=limited)
    return out
