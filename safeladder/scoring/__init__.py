"""Dataset scoring as a library: a file of rows → a reward → JSONL, resumable, bad rows kept.

What lives here: ``ScoreJob`` (what to score, how) and ``run_score`` (runs it, returns the
summary); the engine (``engine.Scorer``: checks, resume, the one checkpoint loop and writer;
``LocalScorer`` in process, ``ray_engine.RayScorer`` on a Ray actor pool); ``chunks`` (one chunk
→ one ``Reward.score`` → encoded lines, shared by both engines); ``checkpoint``
(``OUT.progress.json``); ``summary`` (streaming statistics of a scored file). Failures are
``ScoringJobError`` (the job is wrong, nothing scored) and ``ScoringError`` (the run failed).

Layer: imports types, errors, config, data and rewards only; never integrations, serving,
guidance, training or cli. Ray is imported inside functions (``ray_engine``, ``ray_cluster``),
so ``import safeladder.scoring`` stays light.

Example::

    from pathlib import Path
    from safeladder.scoring import ScoreJob, run_score
    summary = run_score(ScoreJob(input=Path("in.jsonl"), output=Path("out.jsonl")))
"""

from safeladder.errors import ScoringError, ScoringJobError
from safeladder.scoring.checkpoint import Progress, input_fingerprint
from safeladder.scoring.chunks import ScoredChunk, iter_chunks, score_chunk
from safeladder.scoring.engine import LocalScorer, Scorer, progress_bar, run_score
from safeladder.scoring.job import ScoreJob, SidePaths
from safeladder.scoring.summary import RunningStats, format_summary, summarize_output

__all__ = [
    "LocalScorer",
    "Progress",
    "RunningStats",
    "ScoreJob",
    "ScoredChunk",
    "Scorer",
    "ScoringError",
    "ScoringJobError",
    "SidePaths",
    "format_summary",
    "input_fingerprint",
    "iter_chunks",
    "progress_bar",
    "run_score",
    "score_chunk",
    "summarize_output",
]
