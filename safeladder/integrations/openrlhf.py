"""OpenRLHF adapter: ``reward_func`` for the python-file reward mode, and ``split_query``.

Python-file mode: ``--reward.remote_url /path/to/file.py`` (OpenRLHF detects the ``.py``
suffix, loads the file and calls its ``reward_func``; ``openrlhf/utils/agent.py::
SingleTurnAgentExecutor``). Point it at a two-line file::

    # my_reward.py
    from safeladder.integrations.openrlhf import reward_func  # noqa: F401

and configure safeladder through the environment of the rollout workers, because this mode
passes no keyword arguments: ``SAFELADDER_REWARD_CONFIG`` (YAML path or preset name; unset:
the shipped default reward), ``SAFELADDER_NAN_SCORE`` (see below),
``SAFELADDER_STRIP_SUFFIXES`` (see ``DEFAULT_STRIP_SUFFIXES``) and ``SAFELADDER_META`` (a JSON
object merged into every row's ``meta``: OpenRLHF passes no per-row metadata; the default
reward routes a row with a label to its answer check (math extraction + equivalence, else
exact match) and a row without one to the ``general`` recipe; set e.g.
``SAFELADDER_META='{"task": "math"}'`` to pick a recipe yourself). With Ray, pass them in the
job's ``runtime_env`` ``env_vars``.

Call convention (OpenRLHF HEAD): ``reward_func(queries, prompts, labels)`` with three aligned
lists, positionally, from ``asyncio.to_thread`` with one sample per call (older versions sent
chunks of ``micro_rollout_batch_size`` from Ray tasks; any ``B`` works):

- ``queries[i]``: the decoded prompt + response, special tokens kept
  (``hf_tokenizer.decode(observation_tokens, skip_special_tokens=False)``);
- ``prompts[i]``: the prompt text (chat template applied by the dataset);
- ``labels[i]``: the dataset's ``--data.label_key`` column (→ ``reference``).

The completion is ``split_query(query, prompt)``: the query minus its prompt prefix -- never a
guess: a query that does not start with its prompt (a prompt truncated to fit ``max_len``, a
tokenizer whose decode does not round-trip the prompt text) is an ``InputError`` naming the
row. Trailing end-of-sequence markers (``<|im_end|>``, ``</s>`` ...) are then removed, so the
verifiers see what TRL and verl hand them (those decode with ``skip_special_tokens=True``).

Return value (``examples/python/reward_func.py``): ``{"rewards": Tensor[B], "scores":
Tensor[B], "extra_logs": {<term>: Tensor[B], ...}}``, float32 on CPU.

- ``rewards``: the reward's total.
- ``scores``: the *same* values. OpenRLHF uses ``scores`` for dynamic filtering (a group is kept
  when ``min_r < mean < max_r``, ``--algo.dynamic_filtering_range``, default 0..1). We do not
  squash the total into [0, 1]: with one sample per call there is no batch to normalize over,
  and a fixed squash would need bounds a composed or learned reward does not have. Set the
  filtering range in the reward's own units instead. This is what OpenRLHF's own reward server
  does (all three fields hold the same values), and it keeps OpenRLHF's
  ``rewards_info.get("scores") or rewards_info.get("rewards")`` harmless (a one-element 0.0
  tensor is falsy there and falls back to ``rewards``).
- ``extra_logs``: one tensor per term (NaN where the term did not apply to the row or
  abstained -- OpenRLHF keeps only the first element per sample), plus ``unscorable``
  (1.0 / 0.0) when ``SAFELADDER_NAN_SCORE`` is set, ``gated`` when the reward has gates, and
  ``reference_unread`` (1.0 where the label was read by no term: a misrouted row).

Unscorable rows (no objective term could score the row) follow the verl adapter's rule: NaN
cannot be a reward and is never silently 0. Unset ``SAFELADDER_NAN_SCORE`` → ``InputError``
naming the row (also logged at ERROR level, because OpenRLHF catches exceptions from the
reward function and logs them at INFO, leaving the sample without a reward); set it → those
rows get that value and ``extra_logs["unscorable"]`` counts them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from safeladder.errors import ConfigError, InputError
from safeladder.integrations._common import (
    ENV_NAN_SCORE,
    finite_totals,
    nan_score_from_env,
    resolve_config,
    shared_reward,
)
from safeladder.types import SampleBatch

#: A JSON object merged into every row's meta (e.g. ``{"task": "math"}``).
ENV_META = "SAFELADDER_META"
#: Keys OpenRLHF itself puts next to ``extra_logs`` in a sample's info, plus the ones added here.
RESERVED_KEYS: tuple[str, ...] = (
    "reward",
    "score",
    "response_clip_ratio",
    "unscorable",
    "gated",
    "reference_unread",
)
#: Comma-separated end markers to strip from the end of completions (empty: strip nothing).
ENV_STRIP_SUFFIXES = "SAFELADDER_STRIP_SUFFIXES"
#: End-of-sequence / end-of-turn markers of common chat models (Qwen/ChatML, GPT-2, Llama 2,
#: Llama 3, Mistral, Gemma, Phi-3, DeepSeek). Removed only from the very end, repeatedly.
DEFAULT_STRIP_SUFFIXES: tuple[str, ...] = (
    "<|im_end|>",
    "<|endoftext|>",
    "</s>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<eos>",
    "<|end|>",
    "<｜end▁of▁sentence｜>",
)


def _snippet(text: str, start: int, width: int = 40) -> str:
    return repr(text[max(0, start - width // 2) : start + width // 2])


def split_query(
    query: str,
    prompt: str,
    *,
    row: int | None = None,
    strip_suffixes: Sequence[str] = (),
) -> str:
    """The completion inside an OpenRLHF query: ``query`` minus its ``prompt`` prefix.

    Args:
        query: prompt + response as OpenRLHF decodes it.
        prompt: the prompt text.
        row: the row index, for the error message.
        strip_suffixes: markers removed from the end of the completion, repeatedly
            (``removesuffix``, never ``rstrip``), e.g. ``("<|im_end|>",)``.

    Raises:
        InputError: ``query`` does not start with ``prompt``; the message shows where they
            first differ.

    >>> split_query("<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>",
    ...             "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n",
    ...             strip_suffixes=["<|im_end|>"])
    'Hello!'
    """
    where = f"row {row}" if row is not None else "query"
    if not isinstance(query, str) or not isinstance(prompt, str):
        raise InputError(
            f"{where}: query and prompt must be strings, got {type(query).__name__} and {type(prompt).__name__}",
            row=row,
            field="query" if not isinstance(query, str) else "prompts",
        )
    if not query.startswith(prompt):
        k = 0
        limit = min(len(query), len(prompt))
        while k < limit and query[k] == prompt[k]:
            k += 1
        why = (
            f"the query ends after {len(query)} characters, inside the prompt ({len(prompt)})"
            if k == len(query)
            else f"they differ at character {k}: query {_snippet(query, k)} vs prompt {_snippet(prompt, k)}"
        )
        raise InputError(
            f"{where}: the query does not start with its prompt ({why}); the completion cannot "
            "be told apart from the prompt (a truncated prompt, or a tokenizer whose decode does "
            "not reproduce the prompt text?)",
            row=row,
            field="query",
        )
    completion = query[len(prompt) :]
    changed = bool(strip_suffixes)
    while changed:
        changed = False
        for s in strip_suffixes:
            if s and completion.endswith(s):
                completion = completion.removesuffix(s)
                changed = True
    return completion


def strip_suffixes_from_env() -> tuple[str, ...]:
    """``$SAFELADDER_STRIP_SUFFIXES`` (comma-separated; set but empty: none) or the defaults."""
    raw = os.environ.get(ENV_STRIP_SUFFIXES)
    if raw is None:
        return DEFAULT_STRIP_SUFFIXES
    return tuple(s for s in (p.strip() for p in raw.split(",")) if s)


def meta_from_env() -> dict[str, Any]:
    """``$SAFELADDER_META`` parsed as a JSON object (unset: ``{}``)."""
    raw = os.environ.get(ENV_META)
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"${ENV_META}: not valid JSON ({exc}): {raw!r}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"${ENV_META}: must be a JSON object, got {type(meta).__name__}")
    return meta


_FIX = (
    f"set ${ENV_NAN_SCORE} in the rollout workers' environment to the score such rows should "
    "get; they are then counted in extra_logs['unscorable']"
)


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    """OpenRLHF python-file reward: ``{"rewards", "scores", "extra_logs"}`` tensors of shape ``[B]``.

    Args:
        queries: ``B`` decoded prompt + response strings.
        prompts: ``B`` prompt strings (each a prefix of its query).
        labels: ``B`` references (the dataset's label column).
        **kwargs: accepted for forward compatibility and ignored (OpenRLHF passes none).

    Example::

        >>> out = reward_func(["Q: capital of France?\\nA: Paris</s>"], ["Q: capital of France?\\nA: "], ["Paris"])
        >>> sorted(out), out["rewards"].shape
        (['extra_logs', 'rewards', 'scores'], torch.Size([1]))
    """
    import torch  # OpenRLHF always has torch; safeladder's import stays light without it

    n = len(queries)
    if len(prompts) != n or len(labels) != n:
        raise InputError(
            f"reward_func: {n} queries, {len(prompts)} prompts and {len(labels)} labels; they must align"
        )
    suffixes = strip_suffixes_from_env()
    completions = [
        split_query(q, p, row=i, strip_suffixes=suffixes)
        for i, (q, p) in enumerate(zip(queries, prompts, strict=True))
    ]
    reward = shared_reward(resolve_config(None))
    clash = [t for t in reward.term_names if t in RESERVED_KEYS]
    if clash:
        raise ConfigError(
            f"reward {reward.name!r}: term names {clash} clash with OpenRLHF's sample info keys "
            f"({list(RESERVED_KEYS)}); rename the terms"
        )
    meta = meta_from_env()
    batch = SampleBatch.from_columns(
        list(prompts), completions, list(labels), [dict(meta) for _ in range(n)]
    )
    result = reward.score(batch)
    nan_score = nan_score_from_env()
    total, unscorable = finite_totals(result, nan_score, lambda i: f"row {i}", _FIX)

    def tensor(values: Any) -> Any:
        return torch.as_tensor(values, dtype=torch.float32).reshape(n)

    rewards = tensor(total)
    extra: dict[str, Any] = {name: tensor(sb.scores) for name, sb in result.terms.items()}
    if nan_score is not None:
        extra["unscorable"] = tensor(unscorable)
    if any(t.gate is not None for t in reward.config.terms):
        extra["gated"] = tensor(result.gated)
    extra["reference_unread"] = tensor(result.reference_unread)
    return {"rewards": rewards, "scores": rewards.clone(), "extra_logs": extra}


__all__ = [
    "DEFAULT_STRIP_SUFFIXES",
    "ENV_META",
    "ENV_STRIP_SUFFIXES",
    "meta_from_env",
    "reward_func",
    "split_query",
    "strip_suffixes_from_env",
]
