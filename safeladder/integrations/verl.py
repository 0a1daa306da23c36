"""verl adapter: module-level ``compute_score`` / ``compute_score_batch`` for a custom reward.

Point verl at it (``verl/utils/import_utils.py::load_module`` takes ``pkg://`` module paths as
well as file paths)::

    reward:
      custom_reward_function:
        path: pkg://safeladder.integrations.verl   # or the file: python -c "import safeladder.integrations.verl as m; print(m.__file__)"
        name: compute_score          # compute_score_batch with reward_manager batch
        reward_kwargs:               # optional; merged into every call (verl/trainer/ppo/reward.py)
          config: /path/to/reward.yaml   # else $SAFELADDER_REWARD_CONFIG, else the shipped default
          nan_score: 0.0             # optional; see "Unscorable rows"
          task_from: data_source     # optional; route rows by their data_source
          task_map: {openai/gsm8k: math, lighteval/MATH: math}

(The legacy top-level ``custom_reward_function`` block works the same way.)

Call conventions, as verl makes them (verl-project/verl):

- ``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...,
  **reward_kwargs)`` -- one sample per call, keyword arguments only, from the legacy naive
  manager (``verl/workers/reward_manager/naive.py``) and, in a thread pool
  (``loop.run_in_executor``), from the reward-loop naive manager
  (``verl/experimental/reward_loop/reward_manager/naive.py``), which adds
  ``reward_router_address`` / ``reward_model_tokenizer`` when a reward model is enabled.
- ``compute_score_batch(data_sources=..., solution_strs=..., ground_truths=...,
  extra_infos=..., **reward_kwargs)`` -- a whole chunk per call, from the batch managers
  (``verl/workers/reward_manager/batch.py``, ``verl/experimental/reward_loop/reward_manager/
  batch.py``); ``data_sources`` / ``extra_infos`` may be numpy object arrays.

A sample is built as:

- ``completion`` = ``solution_str``: the decoded *response only*
  (``skip_special_tokens=True``); verl does not pass the prompt;
- ``prompt`` = ``extra_info["prompt"]`` (a string or chat messages) when the dataset stores it
  there (``prompt_key`` to choose another key), else ``""`` -- so verifiers that read the
  prompt (refusal on a harmful request, a judge) need it in ``extra_info``;
- ``reference`` = ``ground_truth`` (numpy arrays become lists: "any of these");
- ``images`` = ``extra_info["images"]`` (``images_key`` to choose another key), else
  ``extra_info["image"]`` (one image), else ``extra_info["multi_modal_data"]["image"]`` (the
  shape verl's ``RLHFDataset`` gives ``multi_modal_data``), plus the images carried by image
  parts of the chat prompt (``{"type": "image", "image": ...}``, as in verl's ``raw_prompt``),
  each once (``_common.split_images``). A cell may be a path, a data URL, bytes, a Hugging
  Face ``Image`` cell ``{"bytes", "path"}`` (what a Parquet ``images`` column reads back as)
  or a PIL image, or a list of those. **verl's reward managers pass only ``extra_info``** --
  not the ``images`` column nor ``multi_modal_data`` (``verl/workers/reward_manager/naive.py``,
  ``verl/experimental/reward_loop/reward_manager/{naive,batch}.py``) -- so a dataset whose
  reward reads images copies them into ``extra_info`` when it is written (e.g.
  ``extra_info={"index": i, "images": [{"bytes": png}]}`` next to verl's own ``images``
  column). The image keys never go to ``meta``;
- ``meta`` = ``extra_info`` (every key; verl adds ``num_turns`` and ``rollout_reward_scores``)
  plus ``meta["data_source"] = data_source``; with ``task_from: K`` the route key of the reward
  (``meta["task"]`` for the default reward) is set from ``meta[K]``, mapped through
  ``task_map`` when the value is listed there (other values pass through unchanged).

Return value: ``{"score": total, <term>: value, ...}`` with Python floats. verl puts ``score``
at the last response token and logs every key (``reward_extra_info``), so each term is
logged per sample. A term that did not apply to a row (routes) or abstained is NaN in its key:
every row has the same keys, as verl requires, and NaN says "no score" -- verl's
validation means of such a key read NaN when a data source mixes rows with and without the
term. With ``nan_score`` set, an ``unscorable`` key (1.0 / 0.0) is added; with gates, a
``gated`` key; always a ``reference_unread`` key (1.0 where the row's ``ground_truth`` was read
by no term -- a misrouted row; the reward also warns once) and an ``images_unread`` key (1.0
where the row's images were looked at by no term).

Routing with the default reward (no ``task_from`` needed): a row without ``meta["task"]`` is
routed by its ``data_source`` -- the names verl's own ``default_compute_score`` dispatches on
(``openai/gsm8k``, the MATH variants, ``math_dapo``, ``aime*``, ``numina_*``,
``hiyouga/geometry3k`` → math; ``searchR1_*`` → exact-match QA; code sources are refused with a
reason, since their tests must be executed) -- and a row with an unknown source but a
``ground_truth`` gets the answer check (math extraction + equivalence, else exact match). The
answer terms are required, so a row whose ground truth cannot be read is unscorable, not 0.

Unscorable rows (no objective term could score the row: e.g. a missing reference with a
correctness-only reward, or a math check that timed out): ``score`` cannot be NaN in verl (it
would poison the batch's advantages) and safeladder never makes it 0 silently. By default such
a row raises ``InputError`` naming it (data source, ``extra_info.index``) and the reasons;
set ``nan_score`` in ``reward_kwargs`` (or ``$SAFELADDER_NAN_SCORE``) to give those rows an
explicit value instead -- each one is then marked ``unscorable: 1.0`` in the logged extras.

Stateful terms (``confidence_calibration`` with ``adaptive_lambda``): the state lives in the
shared reward, so there is **one λ per process**. verl's naive manager calls ``compute_score``
once per row: set ``adaptive_lambda.min_rows`` (e.g. the rollout batch size) so the counts of
successive calls are pooled into one update per batch, and ``adaptive_lambda.state_file`` so λ
survives a restart (it is rewritten after each update). With several reward worker processes,
each keeps its own λ; use ``compute_score_batch`` with the batch manager, in one process, to
get one λ over whole batches.

The reward is built once per process and config (``_common.shared_reward``), lazily, and is
safe to call from many threads at once and from Ray worker processes: verifiers that can hang
use process pools with hard wall-clock kills, never ``signal.alarm``. Other keyword arguments
are refused with a ``ConfigError`` naming them (a misspelt ``reward_kwargs`` key must not be
ignored silently), except those verl itself may add, listed in ``VERL_KWARGS``.
"""

# No `from __future__ import annotations`: verl may load this file by path as an anonymous
# module (verl/utils/import_utils.py::load_module, not in sys.modules), where pydantic could not
# resolve string annotations of VerlOptions.

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from safeladder.errors import ConfigError, InputError
from safeladder.integrations._common import (
    ENV_NAN_SCORE,
    ENV_REWARD_CONFIG,
    finite_totals,
    nan_score_from_env,
    parse_nan_score,
    plain,
    resolve_config,
    row_images,
    shared_reward,
)
from safeladder.rewards import Reward
from safeladder.types import SampleBatch

#: Keyword arguments verl passes on its own (reward-model plumbing, sandbox settings of
#: ``default_compute_score``); accepted and ignored.
VERL_KWARGS: frozenset[str] = frozenset(
    {
        "reward_router_address",
        "reward_model_tokenizer",
        "sandbox_fusion_url",
        "concurrent_semaphore",
        "memory_limit_mb",
    }
)
#: Keys this adapter adds next to the term names (a term may not use them).
RESERVED_KEYS: tuple[str, ...] = (
    "score",
    "unscorable",
    "gated",
    "reference_unread",
    "images_unread",
)


class VerlOptions(BaseModel):
    """``reward_kwargs`` understood by ``compute_score`` / ``compute_score_batch``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: str | dict[str, Any] | None = Field(
        default=None,
        description=f"Reward config: a YAML path, a preset name or an inline mapping; default ${ENV_REWARD_CONFIG}, else the shipped default reward.",
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="Dotted key.path=value overrides applied to the reward config.",
    )
    nan_score: float | None = Field(
        default=None,
        description=f"Score given to unscorable rows (all objective terms NaN); default ${ENV_NAN_SCORE}, else such a row raises.",
    )
    task_from: str | None = Field(
        default=None,
        description="meta key (after merging extra_info and data_source) whose value sets the reward's route key, e.g. 'data_source'.",
    )
    task_map: dict[str, str] | None = Field(
        default=None,
        description="Maps task_from values to recipe names (values not listed pass through unchanged).",
    )
    prompt_key: str = Field(
        default="prompt",
        description="extra_info key holding the prompt (a string or chat messages); absent → ''.",
    )
    images_key: str = Field(
        default="images",
        description="extra_info key holding the row's images (a list of paths, data URLs, bytes, "
        "{bytes, path} cells or PIL images); absent: extra_info 'image', then "
        "'multi_modal_data'['image'], then none.",
    )


def _options(kwargs: Mapping[str, Any]) -> VerlOptions:
    given = {k: plain(v) for k, v in kwargs.items() if k not in VERL_KWARGS}
    try:
        opts = VerlOptions.model_validate(given)
    except ValidationError as exc:
        known = sorted(VerlOptions.model_fields)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"safeladder verl reward_kwargs: {problems} (known keys: {known}; ignored verl keys: {sorted(VERL_KWARGS)})"
        ) from None
    if opts.task_map is not None and opts.task_from is None:
        raise ConfigError("safeladder verl reward_kwargs: task_map needs task_from")
    return opts


def _reward(opts: VerlOptions) -> Reward:
    reward = shared_reward(resolve_config(opts.config), opts.overrides)
    clash = [t for t in reward.term_names if t in RESERVED_KEYS]
    if clash:
        raise ConfigError(
            f"reward {reward.name!r}: term names {clash} clash with the keys verl reads "
            f"({list(RESERVED_KEYS)}); rename the terms"
        )
    if opts.task_from is not None and reward.config.routes is None:
        raise ConfigError(
            f"reward_kwargs task_from={opts.task_from!r}, but reward {reward.name!r} has no routes"
        )
    return reward


def _nan_score(opts: VerlOptions) -> float | None:
    if opts.nan_score is not None:
        return parse_nan_score(opts.nan_score, "reward_kwargs nan_score")
    return nan_score_from_env()


def _prompt(extra: Mapping[str, Any], key: str, row: int) -> Any:
    prompt = extra.get(key)
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, Mapping) for m in prompt):
        return prompt
    raise InputError(
        f"row {row}: extra_info[{key!r}] must be a string or chat messages, got {type(prompt).__name__}",
        row=row,
        field=key,
    )


def _image_cell(meta: dict[str, Any], key: str, row: int) -> tuple[Any, str]:
    """Pop the image keys off ``meta``; the first one present is the row's image cell."""
    found = [(k, meta.pop(k)) for k in (key, "image", "multi_modal_data") if k in meta]
    if not found:
        return None, key
    name, cell = found[0]
    if name == "multi_modal_data":
        if cell is not None and not isinstance(cell, Mapping):
            raise InputError(
                f"row {row}: extra_info['multi_modal_data'] must be a mapping like "
                f"{{'image': [...]}}, got {type(cell).__name__}",
                row=row,
                field="multi_modal_data",
            )
        cell = (cell or {}).get("image")
    return cell, f"extra_info[{name!r}]"


def _batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[Any],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any],
    opts: VerlOptions,
    route_key: str | None,
) -> SampleBatch:
    prompts: list[Any] = []
    metas: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, (ds, extra) in enumerate(zip(data_sources, extra_infos, strict=True)):
        if extra is not None and not isinstance(extra, Mapping):
            raise InputError(
                f"row {i}: extra_info must be a mapping or None, got {type(extra).__name__}",
                row=i,
                field="extra_info",
            )
        meta: dict[str, Any] = plain(extra) if extra is not None else {}
        meta["data_source"] = plain(ds)
        if opts.task_from is not None and route_key is not None:
            if opts.task_from not in meta:
                raise InputError(
                    f"row {i}: task_from={opts.task_from!r} but the row has no such key "
                    f"(keys: data_source + extra_info {sorted(k for k in meta if k != 'data_source')})",
                    row=i,
                    field=opts.task_from,
                )
            value = meta[opts.task_from]
            if opts.task_map is not None and isinstance(value, str):
                value = opts.task_map.get(value, value)
            meta[route_key] = value
        cell, where = _image_cell(meta, opts.images_key, i)
        prompt, refs = row_images(_prompt(meta, opts.prompt_key, i), cell, where, i)
        if opts.prompt_key in meta:
            meta[opts.prompt_key] = prompt  # its image parts are bare placeholders now
        prompts.append(prompt)
        metas.append(meta)
        images.append(refs)
    for i, s in enumerate(solution_strs):
        if not isinstance(s, str):
            raise InputError(
                f"row {i}: solution_str must be a string, got {type(s).__name__}",
                row=i,
                field="solution_str",
            )
    return SampleBatch.from_columns(
        prompts, list(solution_strs), [plain(g) for g in ground_truths], metas, images
    )


def _describe(batch: SampleBatch, i: int, single: bool) -> str:
    meta = batch.metas[i]
    where = "verl sample" if single else f"row {i}"
    index = f", extra_info.index={meta['index']!r}" if "index" in meta else ""
    return f"{where} (data_source={meta.get('data_source')!r}{index})"


_FIX = (
    f"set reward_kwargs nan_score (or ${ENV_NAN_SCORE}) to the score such rows should get; "
    "they are then marked unscorable=1.0 in the logged reward extras"
)


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one verl sample: ``{"score": total, <term>: value, ...}``.

    Args:
        data_source: the row's ``data_source`` (→ ``meta["data_source"]``).
        solution_str: the decoded response (without the prompt).
        ground_truth: ``reward_model.ground_truth`` of the row (→ ``reference``).
        extra_info: the row's ``extra_info`` (→ ``meta``; ``extra_info["prompt"]`` → prompt;
            ``extra_info["images"]`` → images, see the module docstring).
        **kwargs: ``reward_kwargs`` (see ``VerlOptions``) and verl's own extras.

    Example (the default reward routes ``openai/gsm8k`` rows to its math terms)::

        >>> compute_score(data_source="openai/gsm8k", solution_str="... #### 72",
        ...               ground_truth="72")["math_correct"]
        1.0
    """
    opts = _options(kwargs)
    reward = _reward(opts)
    route_key = reward.config.routes.key if reward.config.routes is not None else None
    batch = _batch([data_source], [solution_str], [ground_truth], [extra_info], opts, route_key)
    return _finish(reward, batch, opts, single=True)[0]


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """Score a verl chunk as one batch: one ``{"score": ..., <term>: ...}`` dict per row.

    The arguments are ``compute_score``'s, plural and aligned (lists or numpy object arrays);
    ``extra_infos`` may be None (no extra info for any row).
    """
    n = len(solution_strs)
    if extra_infos is None:
        extra_infos = [None] * n
    lengths = {
        "data_sources": len(data_sources),
        "ground_truths": len(ground_truths),
        "extra_infos": len(extra_infos),
    }
    wrong = {k: v for k, v in lengths.items() if v != n}
    if wrong:
        raise InputError(f"compute_score_batch: {n} solution_strs but {wrong}")
    opts = _options(kwargs)
    reward = _reward(opts)
    route_key = reward.config.routes.key if reward.config.routes is not None else None
    batch = _batch(
        list(data_sources),
        list(solution_strs),
        list(ground_truths),
        list(extra_infos),
        opts,
        route_key,
    )
    return _finish(reward, batch, opts, single=False)


def _finish(
    reward: Reward, batch: SampleBatch, opts: VerlOptions, *, single: bool
) -> list[dict[str, float]]:
    result = reward.score(batch)
    nan_score = _nan_score(opts)
    total, unscorable = finite_totals(
        result, nan_score, lambda i: _describe(batch, i, single), _FIX
    )
    gates = any(t.gate is not None for t in reward.config.terms)
    rows: list[dict[str, float]] = []
    for i in range(len(batch)):
        row: dict[str, float] = {"score": float(total[i])}
        for name, sb in result.terms.items():
            row[name] = float(sb.scores[i])
        if nan_score is not None:
            row["unscorable"] = float(unscorable[i])
        if gates:
            row["gated"] = float(result.gated[i])
        row["reference_unread"] = float(result.reference_unread[i])
        row["images_unread"] = float(result.images_unread[i])
        rows.append(row)
    return rows


__all__ = ["VERL_KWARGS", "VerlOptions", "compute_score", "compute_score_batch"]
