"""TRL adapter: a safeladder ``Reward`` as ``GRPOTrainer(reward_funcs=...)`` callables.

Contract (huggingface/trl 1.16, ``trl/trainer/grpo_trainer.py::_calculate_rewards``): a sync
reward function is called as ``f(prompts=..., completions=..., completion_ids=..., **kw)``
where ``kw`` holds every dataset column except ``prompt`` / ``completion`` / ``completion_ids``
(one value per completion), plus ``trainer_state``, ``log_extra(column, values)``,
``log_metric(name, value)`` and, with ``environment_factory``, ``environments``. It returns one
``float | None`` per completion; ``None`` is NaN there ("not applicable": excluded by
``nansum`` / ``nanmean``; a row where every function returns None gets advantage 0). The
function's display name is ``getattr(f, "__name__", type(f).__name__)``
(``trl/trainer/utils.py::get_callable_name``) and TRL logs ``rewards/<name>/mean`` and ``/std``.

Two ways in:

- ``as_trl(reward)`` → one callable whose value is the reward's ``total`` (gates, routes and
  weights applied by safeladder). TRL sees a single objective.
- ``as_trl_terms(reward)`` → ``(callables, weights)``: one callable per *objective* term
  (weight ≠ 0) plus the matching ``GRPOConfig(reward_weights=...)``, so TRL does the weighting
  and, with ``multi_objective_aggregation="normalize_then_sum"`` (GDPO), normalizes each term
  per group before summing. Rows a routed term does not apply to return None, exactly as
  safeladder's own total skips them. The term callables share one ``Reward.score`` per batch
  (the first one scores, the rest reuse the result; see ``_BatchScorer``). Gates cannot be
  expressed as a weighted sum, so a reward with a gate is refused here (use ``as_trl()``).
  Metric-only terms (weight 0) are not callables: they are logged through ``log_metric``.

Mapping of a TRL batch to samples:

- ``prompt``: the prompt string, or the list of chat messages (conversational format);
- ``completion``: the string, or in conversational format the ``content`` of the last
  ``assistant`` message of the completion (content blocks ``[{"type": "text", "text": ...}]``
  are joined);
- ``reference``: the dataset column ``reference_key``; by default the first of
  ``reference``, ``answer``, ``solution``, ``ground_truth`` that is present (none: None);
- ``images``: the dataset's ``images`` column (a list per row), else its ``image`` column (one
  image per row), exactly the columns ``GRPOTrainer`` feeds a VLM policy
  (``_generate_and_score_completions``: ``"images" in inputs[0]`` first, then ``"image"``).
  TRL also copies those images into the conversational prompt (``prepare_multimodal_messages``
  fills each ``{"type": "image"}`` placeholder with the image object) and passes the columns
  as keyword arguments too; ``split_images`` keeps each image once: ``Sample.images`` holds
  them in placeholder order and the prompt keeps bare placeholders. Image parts that carry
  their own image (``{"type": "image", "image": ref}``, OpenAI ``image_url``) with no image
  column become ``Sample.images`` the same way. A cell may be a PIL image, a path, bytes, a
  data URL, a Hugging Face ``Image`` cell (``{"bytes", "path"}``) or a list of those; the
  image columns never go to ``meta``;
- ``meta``: every other dataset column (so a ``task`` or ``data_source`` column routes rows of
  the default reward; rows with neither but with a reference get its answer check).

Unscorable rows (``total`` NaN: a required term such as the answer check did not score, or a
verifier raised on the row) are None from ``as_trl()`` and from every ``as_trl_terms()``
callable alike.

Logging (when TRL passes the hooks, i.e. ``log_metrics`` / ``log_columns`` are on):
``log_metric("<name>/<term>/mean", v)`` (the raw verifier score over the rows it scored) and
``<name>/<term>/{abstain,timeout,error}_rate``, ``<name>/unscorable_rate``,
``<name>/reference_unread_rate``, ``<name>/row_error_rate`` and (with gates)
``<name>/gated_rate``; values that are NaN (a term applied to no row) are not sent, because
TRL averages what it receives. ``log_extra("<name>/<term>", values)`` adds one column per
term to TRL's completions table (None where the term gave no score). ``<name>`` is the
callable's ``__name__``.

Example::

    from trl import GRPOConfig, GRPOTrainer
    from safeladder import load_reward
    from safeladder.integrations.trl import as_trl, as_trl_terms

    reward = load_reward("configs/reward/math.yaml")
    trainer = GRPOTrainer(model=..., train_dataset=ds, reward_funcs=as_trl(reward), args=GRPOConfig(...))

    funcs, weights = as_trl_terms(reward)
    args = GRPOConfig(..., reward_weights=weights, multi_objective_aggregation="normalize_then_sum")
    trainer = GRPOTrainer(model=..., train_dataset=ds, reward_funcs=funcs, args=args)

The callables are picklable (TRL's async GRPO sends reward functions to a rollout process):
a pickle carries the reward *config*, and the reward is rebuilt on first use on the other side.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from safeladder.data.fields import read_completion
from safeladder.errors import ConfigError, InputError
from safeladder.integrations._common import row_images
from safeladder.numeric import nan_to_none
from safeladder.types import RewardResult, SampleBatch

if TYPE_CHECKING:
    from safeladder.rewards import Reward, RewardConfig

#: Dataset columns tried, in order, for the reference when ``reference_key`` is not given.
DEFAULT_REFERENCE_KEYS: tuple[str, ...] = ("reference", "answer", "solution", "ground_truth")
#: Keyword arguments TRL adds itself; never dataset columns.
TRL_KWARGS: frozenset[str] = frozenset(
    {"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)
#: The dataset columns GRPOTrainer reads images from, in its order of preference.
IMAGE_COLUMNS: tuple[str, ...] = ("images", "image")


def _completion_text(completion: Any, row: int) -> str:
    try:
        return read_completion(completion)
    except ValueError as exc:
        raise InputError(f"row {row}: {exc}", row=row, field="completion") from None


def trl_batch(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: Mapping[str, Any],
    reference_key: str | None = None,
) -> SampleBatch:
    """TRL's reward-function arguments as a ``SampleBatch``.

    Args:
        prompts: ``b`` prompt strings or message lists.
        completions: ``b`` completion strings or message lists.
        columns: the other keyword arguments TRL passed (dataset columns and TRL's own).
        reference_key: the dataset column holding the reference; None tries
            ``DEFAULT_REFERENCE_KEYS`` in order.

    >>> b = trl_batch(["1+1?"], ["2"], {"answer": ["2"], "task": ["math"], "trainer_state": None})
    >>> (b.references, b.metas, b.images)
    (['2'], [{'task': 'math'}], [()])
    >>> trl_batch([[{"role": "user", "content": "hi"}]], ["yo"], {"image": ["a.png"]}).images
    [('a.png',)]
    """
    n = len(completions)
    if len(prompts) != n:
        raise InputError(f"TRL passed {len(prompts)} prompts for {n} completions")
    data: dict[str, Sequence[Any]] = {}
    for key, value in columns.items():
        if key in TRL_KWARGS or key in ("prompts", "completions"):
            continue
        if not isinstance(value, (list, tuple)):
            continue  # not a per-row column (TRL only passes columns as lists)
        if len(value) != n:
            raise InputError(
                f"dataset column {key!r} has {len(value)} values for {n} completions", field=key
            )
        data[key] = value
    if reference_key is not None:
        if reference_key not in data:
            raise InputError(
                f"reference_key={reference_key!r} is not a dataset column of this batch; columns: {sorted(data)}",
                field=reference_key,
            )
        ref_col: str | None = reference_key
    else:
        ref_col = next((k for k in DEFAULT_REFERENCE_KEYS if k in data), None)
    references = list(data[ref_col]) if ref_col is not None else [None] * n
    # As GRPOTrainer: "images" (a list per row) wins over "image" (one per row); neither is meta.
    image_col = next((k for k in IMAGE_COLUMNS if k in data), None)
    cells: Sequence[Any] = data[image_col] if image_col is not None else [None] * n
    skip = {ref_col, *IMAGE_COLUMNS}
    metas = [{k: v[i] for k, v in data.items() if k not in skip} for i in range(n)]
    texts = [_completion_text(c, i) for i, c in enumerate(completions)]
    split = [
        row_images(p, cell, image_col or "images", i)
        for i, (p, cell) in enumerate(zip(prompts, cells, strict=True))
    ]
    return SampleBatch.from_columns(
        [p for p, _ in split], texts, references, metas, [imgs for _, imgs in split]
    )


class _BatchScorer:
    """Scores TRL batches with one ``Reward``; remembers the last batch for the term callables.

    TRL calls every reward function of a step with the *same* ``prompts`` / ``completions`` list
    objects and the same column lists. The last batch's inputs are kept alive with its result,
    so their ``id``s cannot be reused by new objects while cached, and a call whose inputs are
    the identical objects (``is``) with equal completions reuses the ``RewardResult``: N term
    callables cost one ``Reward.score``.
    """

    def __init__(
        self,
        reward: Reward | None,
        config: RewardConfig,
        name: str,
        reference_key: str | None,
        log_metrics: bool,
        log_columns: bool,
    ):
        self._reward = reward
        self.config = config
        self.name = name
        self.reference_key = reference_key
        self.log_metrics = log_metrics
        self.log_columns = log_columns
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, ...], tuple[Any, ...], list[Any], RewardResult] | None = None
        self.calls = 0  # Reward.score calls made: N term callables per batch still make one

    @property
    def reward(self) -> Reward:
        if self._reward is None:
            from safeladder.rewards import Reward

            self._reward = Reward(self.config)
        return self._reward

    def __getstate__(self) -> dict[str, Any]:
        # Ship the config, not the live reward (process pools, models, locks).
        state = dict(self.__dict__)
        state.update(_reward=None, _lock=None, _last=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> RewardResult:
        names = tuple(sorted(k for k in kwargs if k not in TRL_KWARGS))
        objects = (prompts, completions, *(kwargs[k] for k in names))
        with self._lock:
            last = self._last
            if (
                last is not None
                and last[0] == names
                and all(a is b for a, b in zip(last[1], objects, strict=True))
                and last[2] == list(completions)
            ):
                return last[3]
            batch = trl_batch(prompts, completions, kwargs, self.reference_key)
            result = self.reward.score(batch)
            self.calls += 1
            self._last = (names, objects, list(completions), result)
        self._log(result, kwargs)
        return result

    def _log(self, result: RewardResult, kwargs: Mapping[str, Any]) -> None:
        log_metric = kwargs.get("log_metric")
        if self.log_metrics and callable(log_metric):
            skip = {f"{self.name}/mean", f"{self.name}/std"}  # TRL logs the total's itself
            if not any(t.gate is not None for t in self.config.terms):
                skip.add(f"{self.name}/gated_rate")
            for key, value in result.log_dict(prefix=self.name).items():
                # NaN (a term that applied to no row) would poison TRL's running average.
                if key not in skip and not math.isnan(value):
                    log_metric(key, value)
        log_extra = kwargs.get("log_extra")
        if self.log_columns and callable(log_extra):
            for term, sb in result.terms.items():
                log_extra(f"{self.name}/{term}", [nan_to_none(s) for s in sb.scores])


class TRLReward:
    """``as_trl(reward)``: ``(prompts, completions, **kwargs) -> list[float | None]``.

    The value of a row is the reward's ``total`` (None where it is NaN). ``__name__`` is the
    reward's name (or ``name=``); TRL logs ``rewards/<__name__>/mean``.
    """

    def __init__(self, scorer: _BatchScorer):
        self._scorer = scorer
        self.__name__ = scorer.name

    @property
    def reward(self) -> Reward:
        return self._scorer.reward

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        result = self._scorer.score(prompts, completions, kwargs)
        return [nan_to_none(x) for x in result.total]

    def __repr__(self) -> str:
        return f"TRLReward({self.__name__!r})"


class TRLTermReward:
    """One objective term of ``as_trl_terms(reward)``; ``__name__`` is ``<name>/<term>``."""

    def __init__(self, scorer: _BatchScorer, term: str):
        self._scorer = scorer
        self.term = term
        self.__name__ = f"{scorer.name}/{term}"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        result = self._scorer.score(prompts, completions, kwargs)
        # An unscorable row (a required term did not score) is None in every term, so TRL's
        # weighted sum cannot rebuild a plausible total from the remaining terms.
        return [
            None if bad else nan_to_none(x)
            for x, bad in zip(result.terms[self.term].scores, result.unscorable, strict=True)
        ]

    def __repr__(self) -> str:
        return f"TRLTermReward({self.__name__!r})"


def as_trl(
    reward: Reward,
    *,
    name: str | None = None,
    reference_key: str | None = None,
    log_metrics: bool = True,
    log_columns: bool = True,
) -> TRLReward:
    """The reward as one TRL reward function (the total).

    Args:
        reward: the safeladder reward.
        name: the callable's ``__name__`` (default: the reward's name); prefixes its metrics.
        reference_key: dataset column holding the reference (default: the reward config's
            ``reference_key``, else the first of ``reference``, ``answer``, ``solution``,
            ``ground_truth`` present).
        log_metrics: send per-term means and status rates through TRL's ``log_metric``.
        log_columns: send per-row term scores through TRL's ``log_extra``.

    >>> from safeladder import load_reward
    >>> f = as_trl(load_reward({"name": "qa", "terms": [{"name": "em", "verifier": {"type": "qa_match"}}]}))
    >>> f(prompts=["Capital of France?"] * 2, completions=["Paris", "Rome"], answer=["Paris"] * 2)
    [1.0, 0.0]
    >>> f.__name__
    'qa'
    """
    return TRLReward(
        _BatchScorer(
            reward,
            reward.config,
            name or reward.name,
            reference_key or reward.config.reference_key,
            log_metrics,
            log_columns,
        )
    )


def as_trl_terms(
    reward: Reward,
    *,
    name: str | None = None,
    reference_key: str | None = None,
    log_metrics: bool = True,
    log_columns: bool = True,
) -> tuple[list[Callable[..., list[float | None]]], list[float]]:
    """One TRL reward function per objective term, and the matching ``reward_weights``.

    Returns:
        ``(funcs, weights)``: pass ``reward_funcs=funcs`` and ``GRPOConfig(reward_weights=weights)``.
        ``funcs[i].__name__`` is ``"<name>/<term>"``; the weights are the terms' weights.

    Raises:
        ConfigError: the reward has a gate (a veto is not a weighted sum of terms).

    >>> from safeladder import load_reward
    >>> funcs, weights = as_trl_terms(load_reward({"name": "r", "terms": [
    ...     {"name": "em", "verifier": {"type": "qa_match"}, "weight": 2.0},
    ...     {"name": "rep", "verifier": {"type": "repetition"}, "weight": 0.0}]}))
    >>> [f.__name__ for f in funcs], weights
    (['r/em'], [2.0])
    """
    gated = [t.name for t in reward.config.terms if t.gate is not None]
    if gated:
        raise ConfigError(
            f"reward {reward.name!r}: terms {gated} have a gate; TRL combines reward functions "
            "as a weighted sum, which cannot express a veto. Use as_trl(reward) (safeladder "
            "applies the gate to the total) or remove the gate."
        )
    scorer = _BatchScorer(
        reward,
        reward.config,
        name or reward.name,
        reference_key or reward.config.reference_key,
        log_metrics,
        log_columns,
    )
    objective = [t for t in reward.config.terms if t.weight != 0]
    funcs: list[Callable[..., list[float | None]]] = [
        TRLTermReward(scorer, t.name) for t in objective
    ]
    return funcs, [float(t.weight) for t in objective]


__all__ = [
    "DEFAULT_REFERENCE_KEYS",
    "TRLReward",
    "TRLTermReward",
    "as_trl",
    "as_trl_terms",
    "trl_batch",
]
