"""The reward server's Prometheus metrics, through ``prometheus_client`` with one
``CollectorRegistry`` per app (never the process-global one: two apps in one process, e.g.
tests or Ray Serve replicas, keep their own counts).

Metrics (the text format is Prometheus' own; https://prometheus.io/docs/instrumenting/exposition_formats/):

- ``safeladder_requests_total{endpoint,status}``: HTTP requests by route and status code; a
  client that left before its answer was sent is counted as ``499`` (nginx's "client closed
  request"), never as a server error;
- ``safeladder_request_duration_seconds{endpoint}``: latency histogram (receipt to response);
- ``safeladder_batch_rows``: rows per ``Reward.score`` call (histogram);
- ``safeladder_batch_duration_seconds``: wall time of each ``Reward.score`` call (histogram);
- ``safeladder_rows_total``: rows scored; ``safeladder_unscorable_rows_total``: rows whose
  total was NaN (sent as null / ``unscorable_reward``); ``safeladder_gated_rows_total``: rows
  a gate vetoed; ``safeladder_reference_unread_rows_total``: rows that carried a reference no
  term read (a misrouted config shows here on its first batch);
  ``safeladder_images_unread_rows_total``: rows that carried images no term looked at (a
  text-only reward judging answers to pictures);
- ``safeladder_term_rows_total{term,status}``: per term, rows by outcome (``ok``, ``abstain``,
  ``timeout``, ``error``; rows a term was not routed to are not counted);
- ``safeladder_dropped_rows_total{reason}``: queued rows never scored because their request
  timed out (``timeout``) or their client disconnected (``disconnect``);
- gauges read at scrape time: ``safeladder_queue_rows``, ``safeladder_queue_requests``,
  ``safeladder_running_rows``, ``safeladder_batch_age_seconds`` (how long the running
  ``Reward.score`` call has run; 0 when idle);
- per stateful term (``confidence_calibration`` with ``adaptive_lambda``), read at scrape time
  from ``Reward.state_metrics()``: ``safeladder_lambda{term}`` (λ now),
  ``safeladder_false_certain_rate{term}`` (the last counted batch; NaN before any),
  ``safeladder_false_certain_rate_total{term}`` (every row counted so far) and
  ``safeladder_lambda_step{term}`` (updates made). The server keeps one state per process.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

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
#: The exposition format served at /metrics (every Prometheus server reads 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Status label of a request whose client disconnected before the answer was sent.
CLIENT_CLOSED = 499


class Metrics:
    """The server's counters, histograms and scrape-time gauges, in a registry of their own.
    Safe to update from the event loop and the scoring thread at once (``prometheus_client``
    metrics are thread-safe).

    >>> m = Metrics()
    >>> m.count_request("/score", 200, 0.004)
    >>> 'safeladder_requests_total{endpoint="/score",status="200"} 1.0' in m.render().decode()
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "safeladder_requests",
            "HTTP requests by endpoint and status (499: the client left before the answer).",
            ["endpoint", "status"],
            registry=r,
        )
        self._latency = Histogram(
            "safeladder_request_duration_seconds",
            "Request latency, from receipt to response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._batch_rows = Histogram(
            "safeladder_batch_rows",
            "Rows per Reward.score call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._batch_seconds = Histogram(
            "safeladder_batch_duration_seconds",
            "Wall time of each Reward.score call.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._rows = Counter("safeladder_rows", "Rows scored.", registry=r)
        self._unscorable = Counter(
            "safeladder_unscorable_rows",
            "Rows that could not be judged (NaN total: sent as null or unscorable_reward).",
            registry=r,
        )
        self._gated = Counter("safeladder_gated_rows", "Rows whose total a gate set.", registry=r)
        self._reference_unread = Counter(
            "safeladder_reference_unread_rows",
            "Rows that carried a reference no term read (check the reward's routes).",
            registry=r,
        )
        self._images_unread = Counter(
            "safeladder_images_unread_rows",
            "Rows that carried images no term looked at (add an image term, e.g. routes.with_images).",
            registry=r,
        )
        self._term_rows = Counter(
            "safeladder_term_rows",
            "Rows per reward term by outcome (ok, abstain, timeout, error).",
            ["term", "status"],
            registry=r,
        )
        self._dropped = Counter(
            "safeladder_dropped_rows",
            "Queued rows never scored: their request timed out or their client disconnected.",
            ["reason"],
            registry=r,
        )
        self._request_series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def gauges(self, **reads: tuple[str, Callable[[], float]]) -> None:
        """Register scrape-time gauges: ``name=(help, read)``; ``read()`` runs at each scrape."""
        for name, (help_, read) in reads.items():
            Gauge(name, help_, registry=self.registry).set_function(read)

    def term_state(self, read: Callable[[], Mapping[str, Mapping[str, float]]]) -> None:
        """Register per-term state gauges: ``read()`` (term → {name: value}, e.g.
        ``Reward.state_metrics``) runs at each scrape; each name becomes
        ``safeladder_<name>{term}``."""
        self.registry.register(_TermStateCollector(read))

    def count_request(self, endpoint: str, status: int, seconds: float) -> None:
        # The labelled children are looked up once per (endpoint, status): ``labels()`` takes
        # a lock and builds its key on every call, a good part of a fast request's bookkeeping.
        key = (endpoint, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self._requests.labels(endpoint, str(status)),
                self._latency.labels(endpoint),
            )
        series[0].inc()
        series[1].observe(seconds)

    def count_batch(
        self,
        rows: int,
        seconds: float,
        term_status: Mapping[str, Iterable[str]],
        *,
        unscorable: int,
        gated: int,
        reference_unread: int = 0,
        images_unread: int = 0,
    ) -> None:
        """One ``Reward.score`` call: its size, time and per-term row outcomes."""
        self._batch_rows.observe(rows)
        self._batch_seconds.observe(seconds)
        self._rows.inc(rows)
        self._unscorable.inc(unscorable)
        self._gated.inc(gated)
        self._reference_unread.inc(reference_unread)
        self._images_unread.inc(images_unread)
        for term, statuses in term_status.items():
            for status, n in Tally(str(s) for s in statuses).items():
                if status != "skipped":
                    self._term_rows.labels(term, status).inc(n)

    def count_dropped(self, rows: int, reason: str) -> None:
        """Rows taken off the queue unscored (``reason``: ``timeout`` or ``disconnect``)."""
        self._dropped.labels(reason).inc(rows)

    def render(self) -> bytes:
        """The exposition text (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


#: Help text of the known per-term state numbers (others get a generic line).
_STATE_HELP = {
    "lambda": "Adaptive lambda of a confidence_calibration term, now.",
    "false_certain_rate": "False-certain rate of the last batch that counted a row (NaN before any).",
    "false_certain_rate_total": "False-certain rate over every row counted so far.",
    "lambda_step": "Updates of the adaptive lambda made so far.",
}


class _TermStateCollector:
    """Gauges read from the reward's stateful terms at scrape time (see ``Metrics.term_state``)."""

    def __init__(self, read: Callable[[], Mapping[str, Mapping[str, float]]]):
        self._read = read

    def describe(self) -> Iterable[Metric]:
        # Nothing to describe up front: the terms are only known at scrape time, and
        # prometheus_client would otherwise call collect() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for term, values in self._read().items():
            for key, value in values.items():
                fam = families.get(key)
                if fam is None:
                    fam = families[key] = GaugeMetricFamily(
                        f"safeladder_{key}",
                        _STATE_HELP.get(key, f"State of a stateful reward term: {key}."),
                        labels=["term"],
                    )
                fam.add_metric([term], float(value))
        yield from families.values()
