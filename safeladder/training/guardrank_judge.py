"""GuardRank judges: score a dimension's rows 0–3 (hallucination 0–1) with a model.

Two routes, chosen per judge from what it is:

- **Label judge** (a causal LM or, with the engine's processor path, a vision-language model):
  a plain Hugging Face model directory is judged with the dimension's shipped preset
  ``safeladder/presets/label_judge/guardrank_<dimension>.yaml`` (labels ``"0"``–``"3"``,
  hallucination ``"0"`` / ``"1"``; an English template, and a Chinese one for rows with
  ``lang: zh``, picked by ``template_by_meta: lang``). The row's score is the most likely label
  (GuardRank takes the argmax too); the preset's label rewards ``1 - s/3`` make the same
  config usable as a reward verifier (higher is better).
- **Classifier** (GuardRank's own format): a sequence classifier over the text
  ``Dimension: {dimension} Prompt: {prompt} Answer: {response}`` (hallucination:
  ``Prompt: {prompt} Answer: {response}``, as upstream's RoBERTa judge reads it) whose classes
  are named ``"0"``–``"3"`` (hallucination ``"0"`` / ``"1"``); the score is the argmax class.
  Train one with ``safeladder train configs/train/guardrank_classifier.yaml`` on rows rendered
  by ``classifier_training_rows``; a trained output directory (holding
  ``safeladder_verifier.yaml``) is recognised as such.

A judge spec is a model directory (a ``...ForSequenceClassification`` checkpoint is a
classifier, anything else a label judge), a trained output directory, a verifier config file
(YAML / JSON; a ``label_judge`` without a template gets the dimension's preset) or a dict.
Judges run with ``on_error: abstain`` unless the config says otherwise: a row the judge cannot
score (too long, unreadable image, non-finite output) is reported as unjudged with its reason,
never as a score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from safeladder.config import load_yaml
from safeladder.errors import ConfigError, InputError
from safeladder.training.guardrank import JUDGED, MAX_SCORE
from safeladder.training.guardrank_rows import RowItem, read_guardrank_rows, row_images
from safeladder.training.run_files import VERIFIER_FILE, verifier_config
from safeladder.types import prompt_text

JudgeSpec = str | Path | Mapping[str, Any]

#: judged dimension → the shipped label-judge preset name.
PRESET_NAMES: dict[str, str] = {d: f"guardrank_{d}" for d in JUDGED}


def classifier_input(dimension: str, prompt: str, response: str) -> tuple[str, str]:
    """GuardRank's classifier text, split as ``(prompt part, answer part)``.

    Rendered plainly (``render.template: plain``) the classifier reads ``head + answer``, which
    is upstream's ``Dimension: {dim} Prompt: {prompt} Answer: {response}``; keeping the answer
    apart lets truncation cut the prompt first.

    >>> "".join(classifier_input("privacy", "Who lives here?", "I will not say."))
    'Dimension: privacy Prompt: Who lives here? Answer: I will not say.'
    """
    if dimension == "hallucination":
        return f"Prompt: {prompt} Answer: ", response
    return f"Dimension: {dimension} Prompt: {prompt} Answer: ", response


def _model_kind(path: Path) -> str:
    """``classifier`` for a sequence-classification checkpoint, else ``label_judge``."""
    import json

    try:
        archs = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError):
        archs = None
    if any(str(a).endswith("ForSequenceClassification") for a in archs or ()):
        return "classifier"
    return "label_judge"


def _class_names(path: Path) -> list[str]:
    """The class names in a checkpoint's ``config.json`` (``id2label``), or [] when unknown."""
    import json

    try:
        id2label = json.loads((path / "config.json").read_text(encoding="utf-8")).get("id2label")
    except (OSError, ValueError):
        return []
    if not isinstance(id2label, dict):
        return []
    return [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]


def judge_config(dimension: str, spec: JudgeSpec) -> dict[str, Any]:
    """The verifier config that judges ``dimension`` (see the module docstring).

    Raises:
        ConfigError: the spec is neither a model directory nor a config file, or its type is
            not ``label_judge`` / ``classifier``.
    """
    from safeladder.verifiers.judge_presets import load_preset

    if dimension not in JUDGED:
        raise ConfigError(f"judge: {dimension!r} is not a judged dimension ({', '.join(JUDGED)})")
    if isinstance(spec, Mapping):
        cfg = dict(spec)
    else:
        p = Path(spec).expanduser()
        if p.is_dir():
            if (p / VERIFIER_FILE).is_file():
                cfg = verifier_config(p)
            else:
                cfg = {"type": _model_kind(p), "path": str(p)}
        elif p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".json"):
            cfg = load_yaml(p)
        else:
            raise ConfigError(
                f"judge {str(spec)!r}: not a model directory, a trained output directory or a "
                "verifier config file (.yaml / .json)"
            )
    kind = cfg.get("type")
    if kind == "label_judge":
        if not cfg.get("template") and not cfg.get("preset"):
            cfg = {**load_preset(PRESET_NAMES[dimension]), **cfg}
    elif kind == "classifier":
        # The best score's class: the scalar a classifier verifier reports (unused here; the
        # argmax over the classes is the score) and required for a head of more than 2 classes.
        cfg.setdefault("good_label", "0")
    else:
        raise ConfigError(
            f"judge for {dimension}: type must be label_judge or classifier, got {kind!r}"
        )
    cfg.setdefault("on_error", "abstain")
    cfg.setdefault("name", f"guardrank_{dimension}")
    return cfg


def _score_of(label: Any, dimension: str, judge: str) -> int:
    top = MAX_SCORE[dimension]
    try:
        s = int(str(label).strip())
    except ValueError:
        s = -1
    if not 0 <= s <= top:
        raise ConfigError(
            f"judge {judge!r} for {dimension}: label {label!r} is not a score 0..{top}; a "
            f"GuardRank judge's labels / classes must be named 0..{top}"
        )
    return s


class DimensionJudge:
    """One dimension's judge: ``score(items)`` → per row ``(score or NaN, reason or None)``."""

    def __init__(self, dimension: str, config: Mapping[str, Any]):
        from safeladder.verifiers import build_verifier

        self.dimension = dimension
        self.kind = str(config["type"])
        self.config = dict(config)
        if self.kind == "classifier":
            # Check the class names before the verifier does (its complaint would be about
            # good_label, not about what a GuardRank judge needs).
            for lab in _class_names(Path(str(self.config.get("path", "")))):
                _score_of(lab, dimension, str(self.config.get("path")))
        self.verifier = build_verifier(self.config)
        if self.kind == "label_judge":
            labels = list(self.config.get("labels") or {})
            if not labels:
                labels = list(getattr(getattr(self.verifier, "cfg", None), "labels", {}) or {})
            for lab in labels:
                _score_of(lab, dimension, self.verifier.name)
        else:
            for lab in getattr(self.verifier, "labels", []):
                _score_of(lab, dimension, self.verifier.name)

    def close(self) -> None:
        """Release the model."""
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()

    def _sample(self, item: RowItem, data_file: Path) -> Any:
        from safeladder.types import Sample

        row = item.row
        response = row.response or ""
        images = row_images(item, data_file)
        if self.kind == "classifier":
            head, answer = classifier_input(self.dimension, prompt_text(row.prompt or ""), response)
            return Sample(prompt=head, completion=answer, images=images)
        return Sample(
            prompt=row.prompt or "",
            completion=response,
            images=images,
            meta={"lang": row.lang or "en"},
        )

    def score(
        self, items: Sequence[RowItem], data_file: Path, batch_size: int = 64
    ) -> list[tuple[float, str | None]]:
        """Score ``items`` (rows of this dimension) in batches of ``batch_size``."""
        from safeladder.types import SampleBatch

        out: list[tuple[float, str | None]] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = SampleBatch.from_samples([self._sample(it, data_file) for it in chunk])
            res = self.verifier.score(batch)
            for st, det in zip(res.status, res.details, strict=True):
                det = det or {}
                if st != "ok":
                    out.append((math.nan, f"{st}: {det.get('reason', 'no reason given')}"))
                    continue
                if self.kind == "classifier":
                    probs = det.get("probs") or {}
                    label = max(probs, key=lambda k: probs[k]) if probs else None
                else:
                    label = det.get("label")
                if label is None:
                    out.append((math.nan, "the judge gave no label"))
                    continue
                out.append((float(_score_of(label, self.dimension, self.verifier.name)), None))
        return out


def build_judges(
    dimensions: Iterable[str],
    default: JudgeSpec | None,
    per_dimension: Mapping[str, JudgeSpec] | None = None,
) -> dict[str, DimensionJudge]:
    """A judge for each of ``dimensions`` (those with rows to judge).

    Raises:
        ConfigError: a dimension has neither a per-dimension judge nor a default one.
    """
    per = dict(per_dimension or {})
    out: dict[str, DimensionJudge] = {}
    for d in dimensions:
        spec = per.get(d, default)
        if spec is None:
            raise ConfigError(
                f"{d} rows have no score and no judge was given: pass a judge model (VERIFIER) "
                f"or --judge {d}=DIR, or give the rows a score"
            )
        out[d] = DimensionJudge(d, judge_config(d, spec))
    return out


def classifier_training_rows(path: Path, format: str | None = None) -> list[dict[str, Any]]:
    """Training rows for the GuardRank classifier from a file of scored GuardRank rows.

    Each judged row with a score becomes ``{"prompt": head, "response": answer, "label":
    "<score>", "category": dimension}`` (``classifier_input``); write them as JSONL and point
    ``data.train`` of ``configs/train/guardrank_classifier.yaml`` at it. Hallucination rows are
    skipped (their judge is binary: train it separately, from its own rows).

    Raises:
        InputError: a judged row has no score (unjudged rows cannot teach a judge).
    """
    rows: list[dict[str, Any]] = []
    for it in read_guardrank_rows(path, format):
        r = it.row
        if r.dimension not in JUDGED or r.dimension == "hallucination":
            continue
        if r.score is None:
            raise InputError(f"row {it.line}: score: required to train a judge", row=it.line)
        head, answer = classifier_input(r.dimension, prompt_text(r.prompt or ""), r.response or "")
        rows.append(
            {"prompt": head, "response": answer, "label": str(r.score), "category": r.dimension}
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m safeladder.training.guardrank_judge IN.jsonl OUT.jsonl``: render training rows."""
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(
            "usage: python -m safeladder.training.guardrank_judge ROWS OUT.jsonl", file=sys.stderr
        )
        return 2
    rows = classifier_training_rows(Path(args[0]))
    with Path(args[1]).open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows -> {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "PRESET_NAMES",
    "DimensionJudge",
    "JudgeSpec",
    "build_judges",
    "classifier_input",
    "classifier_training_rows",
    "judge_config",
    "main",
]
