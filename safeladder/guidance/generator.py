"""Batched sampling from a local Hugging Face causal LM, behind a small protocol.

The searches (best-of-N, guided search, voting) talk to a ``TextGenerator``: ``render(prompt)``
turns a prompt into the model's input text, and ``generate(contexts, n, ...)`` samples ``n``
continuations of every context, stopping each at EOS, at a stop string or at a token budget.
``HFGenerator`` implements it with its own decode loop (instead of ``model.generate``) because
guided search needs three things ``generate`` does not give together:

- **one prefill per context, shared by its n samples**: the context is run once and its KV cache
  is repeated n times (``Cache.reorder_cache``); ``generate(num_return_sequences=n)`` expands
  the input first and prefills every copy, so a kept prefix would be computed k times per step;
- **a stop string that ends one row** while the others go on, and rows leave the batch (their
  cache rows are dropped) as soon as they finish, so late steps decode only live rows;
- **a seeded ``torch.Generator``** per call: the same seed gives the same samples;
- **prefixes fed back as sampled**: a context this generator produced (prompt + kept steps) is
  encoded to the token ids it was sampled as, not re-tokenized from its text.

A step that ends at a stop string ends with the token that completes it (text after the stop
inside that token stays), so a continuation's text and its token ids always match.

A model that returns no cache is decoded by re-running the whole sequence each token.
Tests use a fake generator implementing the same two methods.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from safeladder.errors import ConfigError
from safeladder.guidance.config import ModelConfig, SamplingConfig
from safeladder.types import Prompt, prompt_text

if TYPE_CHECKING:
    import torch

#: Contexts (text → sampled token ids) remembered for ``_encode``; a guided search needs the
#: prefixes of one step only, so a few thousand cover any batch.
_SAMPLED_MEMORY = 8192


@dataclass(frozen=True)
class Continuation:
    """One sampled continuation of a context.

    Attributes:
        text: the new text (up to the token that completed the stop string, when one ended
            it; EOS excluded).
        n_tokens: tokens sampled for it (EOS included).
        finished: True when the model emitted EOS (the completion is over).
    """

    text: str
    n_tokens: int
    finished: bool


class TextGenerator(Protocol):
    """What the searches need from a generator (``HFGenerator`` or a test double)."""

    def render(self, prompt: Prompt) -> str:
        """The model input text for ``prompt`` (chat template applied when configured)."""
        ...

    def generate(
        self,
        contexts: Sequence[str],
        n: int,
        *,
        max_new_tokens: int,
        stop: str | None = None,
        seed: int = 0,
    ) -> list[list[Continuation]]:
        """``n`` continuations of every context: a list of ``len(contexts)`` lists of length ``n``."""
        ...


class HFGenerator:
    """Samples from a local causal LM (``load_model(path, "causal_lm", runtime)``).

    Args:
        model: ``ModelConfig`` or a model directory path.
        sampling: temperature / top-k / top-p / batch size / chat-template settings.

    Attributes:
        tokens_generated: tokens sampled so far by this generator (a throughput counter).

    Example::

        gen = HFGenerator("ckpt/policy", SamplingConfig(temperature=0.7))
        outs = gen.generate([gen.render("2+2?")], n=4, max_new_tokens=32)
        [c.text for c in outs[0]]
    """

    def __init__(self, model: ModelConfig | str, sampling: SamplingConfig | None = None):
        from safeladder.neural.runtime import load_model

        cfg = model if isinstance(model, ModelConfig) else ModelConfig(path=str(model))
        self.sampling = sampling or SamplingConfig()
        self.loaded = load_model(cfg.path, "causal_lm", cfg.runtime)
        self.model: Any = self.loaded.replicas[0]
        self.device = self.loaded.devices[0]
        self.tokenizer = self.loaded.tokenizer
        self.pad_id = int(
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.loaded.pad_id
        )
        self.eos_ids = self._eos_ids()
        if not self.eos_ids:
            raise ConfigError(
                f"model.path: {cfg.path!r} declares no EOS token (tokenizer or generation config); "
                "generation could only stop at the token budget"
            )
        self.tokens_generated = 0
        self._sampled: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if self.sampling.chat_template == "always" and not has_template:
            raise ConfigError(
                f"sampling.chat_template: 'always', but the tokenizer in {cfg.path!r} has none"
            )
        self._use_template = has_template and self.sampling.chat_template != "never"

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        gen_cfg = getattr(self.model, "generation_config", None)
        for source in (getattr(gen_cfg, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(int(x) for x in source)
        return frozenset(ids)

    def render(self, prompt: Prompt) -> str:
        """The model input text: the chat template with a generation prompt, or the plain text."""
        if not self._use_template:
            return prompt_text(prompt)
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def generate(
        self,
        contexts: Sequence[str],
        n: int,
        *,
        max_new_tokens: int,
        stop: str | None = None,
        seed: int = 0,
    ) -> list[list[Continuation]]:
        """Sample ``n`` continuations of each context (see ``TextGenerator.generate``).

        Contexts are sorted by token length and decoded in chunks of at most
        ``sampling.batch_size`` sequences (contexts x n), so padding stays small.
        """
        import torch

        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got {n}, {max_new_tokens}")
        encoded = [self._encode(c) for c in contexts]
        for i, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"context {i} encodes to no tokens; give the model some input")
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        per_chunk = max(1, self.sampling.batch_size // n)
        out: list[list[Continuation]] = [[] for _ in contexts]
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.inference_mode():
            for start in range(0, len(order), per_chunk):
                chunk = order[start : start + per_chunk]
                got = self._decode([encoded[i] for i in chunk], n, max_new_tokens, stop, gen)
                for j, i in enumerate(chunk):
                    out[i] = [c for c, _ in got[j * n : (j + 1) * n]]
                    for c, ids in got[j * n : (j + 1) * n]:
                        if not c.finished:
                            self._remember(contexts[i] + c.text, encoded[i] + ids)
        return out

    def _decode(
        self,
        batch: list[list[int]],
        n: int,
        max_new_tokens: int,
        stop: str | None,
        gen: torch.Generator,
    ) -> list[tuple[Continuation, list[int]]]:
        """Prefill each context once, repeat its cache n times, decode until every row stops.

        Returns ``(continuation, its token ids without EOS)`` per row, context-major.
        """
        import torch

        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for r, ids in enumerate(batch):  # left padding: every row's last token is at the end
            input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attn[r, width - len(ids) :] = 1
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        dev = self.device
        out = self.model(
            input_ids=input_ids.to(dev),
            attention_mask=attn.to(dev),
            position_ids=positions.to(dev),
            use_cache=True,
        )
        cache = getattr(out, "past_key_values", None)
        rows = len(batch) * n
        expand = torch.arange(len(batch)).repeat_interleave(n)
        logits = out.logits[:, -1, :].float().cpu()[expand]
        attn = attn[expand]
        seqs = input_ids[expand]  # only needed without a cache
        next_pos = positions[expand, -1] + 1
        if cache is not None and n > 1:
            cache.reorder_cache(expand.to(dev))
        tokens: list[list[int]] = [[] for _ in range(rows)]
        texts = [""] * rows
        finished = [False] * rows
        live = list(range(rows))  # row ids still decoding, in cache order
        for step in range(max_new_tokens):
            picked = self._pick(logits, gen).tolist()
            keep: list[int] = []
            for slot, row in enumerate(live):
                tok = int(picked[slot])
                tokens[row].append(tok)
                if tok in self.eos_ids:
                    finished[row] = True
                    continue
                if stop is not None:
                    text = self.tokenizer.decode(tokens[row], skip_special_tokens=True)
                    if stop in text:  # the step ends with the token that completes the stop
                        texts[row] = text
                        continue
                keep.append(slot)
            self.tokens_generated += len(live)
            if not keep or step == max_new_tokens - 1:
                break
            dropped = len(keep) < len(live)
            idx = torch.tensor(keep, dtype=torch.long)
            fed = torch.tensor([picked[s] for s in keep], dtype=torch.long)
            live = [live[s] for s in keep]
            attn = torch.cat([attn[idx], torch.ones((len(keep), 1), dtype=torch.long)], dim=1)
            next_pos = next_pos[idx]
            if cache is not None:
                if dropped:  # finished rows leave the cache: later tokens cost live rows only
                    cache.reorder_cache(idx.to(dev))
                out = self.model(
                    input_ids=fed[:, None].to(dev),
                    attention_mask=attn.to(dev),
                    position_ids=next_pos[:, None].to(dev),
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = out.past_key_values
            else:
                seqs = torch.cat([seqs[idx], fed[:, None]], dim=1)
                full_pos = (attn.cumsum(-1) - 1).clamp(min=0)
                out = self.model(
                    input_ids=seqs.to(dev),
                    attention_mask=attn.to(dev),
                    position_ids=full_pos.to(dev),
                )
            next_pos = next_pos + 1
            logits = out.logits[:, -1, :].float().cpu()
        result: list[tuple[Continuation, list[int]]] = []
        for row in range(rows):
            body = [t for t in tokens[row] if t not in self.eos_ids]
            text = texts[row] or self.tokenizer.decode(body, skip_special_tokens=True)
            result.append((Continuation(text, len(tokens[row]), finished[row]), body))
        return result

    def _encode(self, text: str) -> list[int]:
        """Token ids of a context: the sampled ids when this generator produced the text, so that
        a guided-search prefix is fed back exactly as it was sampled (re-encoding a step that
        ends in a separator can merge tokens differently, e.g. two newlines into one token the
        model never saw there, and derail the next step)."""
        ids = self._sampled.get(text)
        if ids is not None:
            self._sampled.move_to_end(text)
            return list(ids)
        encoded = self.tokenizer(text, add_special_tokens=self.sampling.add_special_tokens)
        return list(encoded["input_ids"])

    def _remember(self, text: str, ids: list[int]) -> None:
        self._sampled[text] = tuple(ids)
        while len(self._sampled) > _SAMPLED_MEMORY:
            self._sampled.popitem(last=False)

    def _pick(self, logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One token per row of ``logits`` (rows, vocab): greedy, or sampled with top-k / top-p."""
        import torch

        s = self.sampling
        if s.temperature == 0.0:
            return logits.argmax(dim=-1)
        logits = logits / s.temperature
        if s.top_k is not None and s.top_k < logits.shape[-1]:
            kth = torch.topk(logits, s.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if s.top_p < 1.0:
            sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
            probs = torch.softmax(sorted_logits, dim=-1)
            # Drop a token when the tokens before it already cover top_p (the first always stays).
            drop = (probs.cumsum(dim=-1) - probs) >= s.top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(1, sorted_idx, sorted_logits)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1)

    def close(self) -> None:
        """Drop the references to the model (the process-wide cache frees it when unused)."""
        self.model = None
