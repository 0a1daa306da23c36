"""Prometheus text exposition (format 0.0.4), written by hand: a few counters and histograms
do not justify a ``prometheus_client`` dependency and its process-global registry (two apps in
one test process would share it).

Every sample line is ``name{label="value",...} number``; see
https://prometheus.io/docs/instrumenting/exposition_formats/ for the format.

Metrics of the reward server:

- ``safeladder_requests_total{endpoint,status}``: HTTP requests by route and status code;
- ``safeladder_request_duration_seconds{endpoint}``: latency histogram (receipt to response);
- ``safeladder_batch_rows``: rows per ``Reward.score`` call (histogram);
- ``safeladder_batch_duration_seconds``: wall time of each ``Reward.score`` call (histogram);
- ``safeladder_queue_rows`` / ``safeladder_queue_requests``: what waits to be scored (gauges);
- ``safeladder_rows_total``: rows scored; ``safeladder_unscorable_rows_total``: rows whose
  total was NaN; ``safeladder_gated_rows_total``: rows a gate vetoed;
- ``safeladder_term_rows_total{term,status}``: per term, rows by outcome (``ok``, ``abstain``,
  ``timeout``, ``error``; rows a term was not routed to are not counted).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

#: Latency buckets (seconds): 1 ms to 2 min, roughly x2.5 apart.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
#: Batch-size buckets (rows): powers of two.
BATCH_BUCKETS: tuple[float, ...] = tuple(float(2**k) for k in range(13))  # 1 .. 4096


def _escape(value: str) -> str:
    # Label values escape backslash, double quote and newline (exposition format spec).
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _num(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


class Histogram:
    """Cumulative-bucket histogram; not thread-safe by itself (``Metrics`` holds the lock)."""

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, upper in enumerate(self.buckets):
            if value <= upper:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: Sequence[tuple[str, str]] = ()) -> list[str]:
        out = [
            f"{name}_bucket{_labels([*labels, ('le', _num(upper))])} {c}"
            for upper, c in zip(self.buckets, self.counts, strict=True)
        ]
        out.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {self.count}")
        out.append(f"{name}_sum{_labels(labels)} {_num(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """The server's counters and histograms; safe to update from the event loop and the
    scoring thread at once.

    >>> m = Metrics()
    >>> m.count_request("/score", 200, 0.004)
    >>> 'safeladder_requests_total{endpoint="/score",status="200"} 1' in m.render()
    True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._latency: dict[str, Histogram] = {}
        self._batch_rows = Histogram(BATCH_BUCKETS)
        self._batch_seconds = Histogram(LATENCY_BUCKETS)
        self._term_rows: Counter[tuple[str, str]] = Counter()
        self._rows = 0
        self._unscorable = 0
        self._gated = 0

    def count_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, str(status))] += 1
            hist = self._latency.get(endpoint)
            if hist is None:
                hist = self._latency[endpoint] = Histogram(LATENCY_BUCKETS)
            hist.observe(seconds)

    def count_batch(
        self,
        rows: int,
        seconds: float,
        term_status: Mapping[str, Iterable[str]],
        unscorable: int,
        gated: int,
    ) -> None:
        """One ``Reward.score`` call: its size, time and per-term row outcomes."""
        with self._lock:
            self._batch_rows.observe(rows)
            self._batch_seconds.observe(seconds)
            self._rows += rows
            self._unscorable += unscorable
            self._gated += gated
            for term, statuses in term_status.items():
                for st in statuses:
                    if st != "skipped":
                        self._term_rows[(term, st)] += 1

    def render(self, gauges: Mapping[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``gauges`` maps a metric name to ``(help, value)``."""
        lines: list[str] = []

        def head(name: str, kind: str, help_: str) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            head("safeladder_requests_total", "counter", "HTTP requests by endpoint and status.")
            for (endpoint, status), n in sorted(self._requests.items()):
                labels = _labels([("endpoint", endpoint), ("status", status)])
                lines.append(f"safeladder_requests_total{labels} {n}")
            head(
                "safeladder_request_duration_seconds",
                "histogram",
                "Request latency, from receipt to response.",
            )
            for endpoint, hist in sorted(self._latency.items()):
                lines += hist.lines("safeladder_request_duration_seconds", [("endpoint", endpoint)])
            head("safeladder_batch_rows", "histogram", "Rows per Reward.score call.")
            lines += self._batch_rows.lines("safeladder_batch_rows")
            head(
                "safeladder_batch_duration_seconds",
                "histogram",
                "Wall time of each Reward.score call.",
            )
            lines += self._batch_seconds.lines("safeladder_batch_duration_seconds")
            head("safeladder_rows_total", "counter", "Rows scored.")
            lines.append(f"safeladder_rows_total {self._rows}")
            head(
                "safeladder_unscorable_rows_total",
                "counter",
                "Rows no objective term could score (NaN total).",
            )
            lines.append(f"safeladder_unscorable_rows_total {self._unscorable}")
            head("safeladder_gated_rows_total", "counter", "Rows whose total a gate set.")
            lines.append(f"safeladder_gated_rows_total {self._gated}")
            head(
                "safeladder_term_rows_total",
                "counter",
                "Rows per reward term by outcome (ok, abstain, timeout, error).",
            )
            for (term, status), n in sorted(self._term_rows.items()):
                labels = _labels([("term", term), ("status", status)])
                lines.append(f"safeladder_term_rows_total{labels} {n}")
        for name, (help_, value) in (gauges or {}).items():
            head(name, "gauge", help_)
            lines.append(f"{name} {_num(value)}")
        return "\n".join(lines) + "\n"
