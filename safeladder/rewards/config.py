"""Reward configs: named terms, gates, routes, per-term normalization and clipping.

Example (YAML)::

    terms:
      - name: correct
        verifier: {type: math_answer}
        weight: 1.0
      - name: format
        verifier: think_format        # a shipped preset or a type name
        weight: 0.0                   # metric only: logged, never added
      - name: safe
        verifier: {type: refusal}
        weight: 0.0
        gate: {below: 0.5, value: -1.0}   # veto: total := -1 where safe < 0.5
    routes:
      key: task                       # meta["task"] picks the recipe of each row
      recipes: {math: [correct, format], safety: [safe]}
      default: math                   # rows without / with an unknown task
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from safeladder.verifiers import VerifierSpec, parse_verifier_config


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateConfig(_Frozen):
    """A veto: where the term's raw score is below ``below`` the row's total becomes ``value``."""

    below: float = Field(
        description="Threshold on the term's raw verifier score; a score < below trips the gate."
    )
    value: float = Field(description="The row's total reward when the gate trips (e.g. -1.0).")
    on_abstain: Literal["veto", "pass"] = Field(
        default="veto",
        description="When the gate's verifier cannot score a row (abstain/timeout/error): 'veto' trips the gate, 'pass' lets the row through.",
    )


class TermConfig(_Frozen):
    """One named reward term: a verifier, a weight and optional normalization, clipping and gate."""

    name: str = Field(description="Unique term name; output columns are reward/<name>.")
    verifier: VerifierSpec = Field(
        description="Verifier config (a mapping with 'type') or the name of a preset."
    )
    weight: float = Field(
        default=1.0, description="Weight in the total; 0 makes the term metric-only."
    )
    normalize: Literal["none", "batch_zscore", "group_zscore", "rank"] = Field(
        default="none",
        description=(
            "Per-term normalization before weighting: batch z-score, z-score within groups of rows "
            "sharing meta[group_key] (e.g. the prompt id of a GRPO group), or rank scaled to [0, 1]."
        ),
    )
    group_key: str | None = Field(
        default=None, description="meta key that groups rows, for normalize: group_zscore."
    )
    clip: tuple[float, float] | None = Field(
        default=None, description="[min, max] applied after normalization."
    )
    gate: GateConfig | None = Field(
        default=None, description="Optional veto on this term's raw score."
    )

    @field_validator("verifier", mode="before")
    @classmethod
    def _resolve_preset(cls, value: Any) -> Any:
        # A string names a shipped preset or a type; resolve it here so errors carry the key path.
        if isinstance(value, str):
            return parse_verifier_config(value)
        return value

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not value or any(c in value for c in "/ \t\n"):
            raise ValueError(
                f"term name must be non-empty without '/' or whitespace, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TermConfig:
        if self.normalize == "group_zscore" and not self.group_key:
            raise ValueError(
                "normalize: group_zscore needs group_key (the meta key that identifies a group)"
            )
        if self.group_key and self.normalize != "group_zscore":
            raise ValueError("group_key is only used with normalize: group_zscore")
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise ValueError(f"clip must be [min, max] with min < max, got {list(self.clip)}")
        return self


class RouteConfig(_Frozen):
    """Per-row recipes: ``meta[key]`` names the recipe (a list of term names) of each row."""

    key: str = Field(description="meta key whose value selects the recipe, e.g. 'task'.")
    recipes: dict[str, list[str]] = Field(
        description="Recipe name → the term names that apply to its rows."
    )
    default: str | None = Field(
        default=None,
        description="Recipe for rows whose meta lacks the key or names no recipe; without it such rows are an error.",
    )


class RewardConfig(_Frozen):
    """A composed reward: ``total = Σ weight·score`` over the row's scored objective terms, then gates."""

    name: str = Field(
        default="reward", description="Name of the reward (used in logs and output columns)."
    )
    terms: list[TermConfig] = Field(min_length=1, description="The reward terms, in order.")
    routes: RouteConfig | None = Field(
        default=None, description="Optional per-row recipes selected by a meta key."
    )
    reference_key: str | None = Field(
        default=None,
        description=(
            "Dataset column that holds the reference for trainer adapters (TRL); default: the "
            "first of reference, answer, solution, ground_truth present."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> RewardConfig:
        names = [t.name for t in self.terms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate term names {dup}; every term needs a unique name")
        if not any(t.weight != 0 for t in self.terms):
            raise ValueError(
                "every term has weight 0: at least one objective term (weight != 0) is needed"
            )
        if self.routes is not None:
            known = set(names)
            for recipe, members in self.routes.recipes.items():
                unknown = [m for m in members if m not in known]
                if unknown:
                    raise ValueError(
                        f"routes.recipes.{recipe}: unknown terms {unknown}; terms are {names}"
                    )
                if len(set(members)) != len(members):
                    raise ValueError(f"routes.recipes.{recipe}: a term is listed twice")
            if self.routes.default is not None and self.routes.default not in self.routes.recipes:
                raise ValueError(
                    f"routes.default: {self.routes.default!r} is not a recipe; recipes are {sorted(self.routes.recipes)}"
                )
            used = {m for members in self.routes.recipes.values() for m in members}
            unused = [n for n in names if n not in used]
            if unused:
                raise ValueError(
                    f"terms {unused} are in no recipe of routes.recipes, so they would never run"
                )
        return self
