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
        default=None,
        description="meta key that groups rows, for normalize: group_zscore (ignored otherwise).",
    )
    group_fallback: Literal["prompt", "error"] = Field(
        default="prompt",
        description=(
            "normalize: group_zscore on a row whose meta lacks group_key: 'prompt' groups it with "
            "the rows that share its prompt text (a GRPO group shares its prompt); 'error' makes "
            "it a bad row."
        ),
    )
    clip: tuple[float, float] | None = Field(
        default=None, description="[min, max] applied after normalization."
    )
    gate: GateConfig | None = Field(
        default=None, description="Optional veto on this term's raw score."
    )
    required: bool = Field(
        default=False,
        description=(
            "Where this term applies and does not score a row (abstain / timeout / error), the "
            "row is unscorable (total NaN) instead of a total made of the other terms. Mark the "
            "term a row is about (its correctness) required; a gate still vetoes afterwards."
        ),
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
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise ValueError(f"clip must be [min, max] with min < max, got {list(self.clip)}")
        return self


class RouteConfig(_Frozen):
    """Per-row recipes, picked in this order (the first that applies wins):

    1. ``meta[key]`` names a recipe;
    2. ``meta[source_key]`` (e.g. verl's ``data_source``) matches a pattern of ``sources``
       (a match in ``refuse_sources`` first makes the row an error with the stated reason);
    3. the row carries a reference (``has_reference``) and ``with_reference`` is set;
    4. ``default``; without it the row is an error.

    Then ``with_images`` adds its terms to the recipe of every row that carries images
    (``Sample.images`` or image parts of a chat prompt). It adds rather than picks a recipe
    because a row with a picture usually still needs its own recipe: a geometry problem keeps
    its answer check and gains the image terms.
    """

    key: str = Field(description="meta key whose value selects the recipe, e.g. 'task'.")
    recipes: dict[str, list[str]] = Field(
        description="Recipe name → the term names that apply to its rows."
    )
    default: str | None = Field(
        default=None,
        description="Recipe for rows no other rule routes; without it such rows are an error.",
    )
    source_key: str = Field(
        default="data_source",
        description="meta key holding the row's data source, matched against 'sources'.",
    )
    sources: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Data source → recipe, for rows whose meta[key] names no recipe (verl passes "
            "data_source, not a task). Keys are exact names or fnmatch patterns ('aime*'); the "
            "first matching key in order wins."
        ),
    )
    refuse_sources: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Data source pattern → why this reward cannot score such rows (e.g. code tasks that "
            "need a sandbox): a matching row is a bad row with that message, never a guess."
        ),
    )
    with_reference: str | None = Field(
        default=None,
        description=(
            "Recipe for rows that carry a reference but name no recipe and no known source, so "
            "a handed-over gold answer is checked rather than dropped."
        ),
    )
    with_images: list[str] = Field(
        default_factory=list,
        description=(
            "Terms added to the recipe of every row that carries images (Sample.images or "
            "image parts of its chat prompt), e.g. [image_safety] or a vision-language judge."
        ),
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
            named = [
                ("default", self.routes.default),
                ("with_reference", self.routes.with_reference),
            ]
            named += [(f"sources.{k}", v) for k, v in self.routes.sources.items()]
            for where, recipe_name in named:
                if recipe_name is not None and recipe_name not in self.routes.recipes:
                    raise ValueError(
                        f"routes.{where}: {recipe_name!r} is not a recipe; recipes are {sorted(self.routes.recipes)}"
                    )
            unknown = [m for m in self.routes.with_images if m not in known]
            if unknown:
                raise ValueError(f"routes.with_images: unknown terms {unknown}; terms are {names}")
            used = {m for members in self.routes.recipes.values() for m in members}
            used |= set(self.routes.with_images)
            unused = [n for n in names if n not in used]
            if unused:
                raise ValueError(
                    f"terms {unused} are in no recipe of routes.recipes (nor routes.with_images), "
                    "so they would never run"
                )
        return self
