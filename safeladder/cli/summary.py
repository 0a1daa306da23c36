"""Moved to ``safeladder.scoring.summary``; these names stay importable from here for older code."""

from safeladder.scoring.summary import RunningStats, format_summary, summarize_output

__all__ = ["RunningStats", "format_summary", "summarize_output"]
