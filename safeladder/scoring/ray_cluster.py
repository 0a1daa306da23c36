"""A Ray cluster for a command: find Ray, start or reach a cluster, size an actor pool.

Used by the Ray scoring engine (``safeladder.scoring.ray_engine``) and by ``safeladder serve
--ray``. Ray is imported inside the functions (it is an optional extra, and slow to import).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from types import ModuleType, TracebackType
from typing import Any

from safeladder.errors import ConfigError, ScoringError, ScoringJobError

#: How to get Ray, in every message about it missing.
RAY_INSTALL_HINT = "pip install 'safeladder[ray]'"

#: Logical CPUs each scoring actor reserves (GPU actors reserve their GPUs on top).
CPUS_PER_WORKER = 1.0


def import_ray(feature: str, *submodules: str) -> ModuleType:
    """``ray`` (and ``ray.<submodule>``), or a ``ConfigError`` that says how to install it.

    Ray is an optional extra; a missing install must read as a usage problem, not an
    ``ImportError`` traceback.
    """
    import importlib

    try:
        ray = importlib.import_module("ray")
        for sub in submodules:
            importlib.import_module(f"ray.{sub}")
    except ImportError as exc:
        raise ConfigError(
            f"{feature} needs Ray ({exc}); install it with: {RAY_INSTALL_HINT}"
        ) from None
    return ray


class RaySession:
    """Use the connected Ray, else connect to ``$RAY_ADDRESS``, else start a private local Ray.

    Only what this object started (or connected) is shut down by ``close()``; a Ray the caller
    had already initialized is left alone. A local Ray gets its own temp dir (sessions of other
    processes under /tmp/ray are never touched) unless ``$RAY_TMPDIR`` names one.

    Example::

        with RaySession("safeladder score --engine ray") as ray:
            print(ray.cluster_resources())
    """

    def __init__(
        self, feature: str, *, num_cpus: int | None = None, submodules: tuple[str, ...] = ()
    ):
        self.feature = feature
        self.num_cpus = num_cpus
        self.submodules = submodules
        self.owned = False  # this object called ray.init (started or connected)
        self.private = False  # ... and started a Ray instance of its own
        self.temp_dir: str | None = None
        self._ray: ModuleType | None = None

    def start(self) -> ModuleType:
        ray = import_ray(self.feature, *self.submodules)
        self._ray = ray
        if ray.is_initialized():
            return ray
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
        if os.environ.get("RAY_ADDRESS"):
            # ray.init reads $RAY_ADDRESS itself ("auto", "host:6379", "ray://..."); the
            # cluster's own settings (temp dir, dashboard) are not ours to pass.
            address = None
        else:
            # "local" always starts a new instance; a bare ray.init() could attach to another
            # process's cluster on this machine.
            address = "local"
            # Loopback: a private instance has no reason to open Ray's ports to the network.
            kwargs.update(
                include_dashboard=False, num_cpus=self.num_cpus, _node_ip_address="127.0.0.1"
            )
            if not os.environ.get("RAY_TMPDIR"):
                # Short path under /tmp: Ray's socket paths must fit in 107 bytes.
                self.temp_dir = tempfile.mkdtemp(prefix="safeladder-ray-", dir="/tmp")
                kwargs["_temp_dir"] = self.temp_dir
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:
            self._remove_temp_dir()
            where = os.environ.get("RAY_ADDRESS") or "a local Ray"
            raise ScoringError(
                f"{self.feature}: cannot start or reach {where}: {type(exc).__name__}: {exc}"
            ) from exc
        self.owned = True
        self.private = address == "local"
        return ray

    def close(self) -> None:
        if self.owned and self._ray is not None:
            self._ray.shutdown()  # stops a private instance; only disconnects from a cluster
            self.owned = self.private = False
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> ModuleType:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def plan_workers(ray: ModuleType, num_workers: int | None, gpus_per_worker: float) -> int:
    """The actor pool size: ``num_workers``, else one per ``gpus_per_worker`` GPUs of the
    cluster, else one per CPU of the cluster.

    >>> from types import SimpleNamespace
    >>> fake = SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0, "GPU": 8.0})
    >>> plan_workers(fake, None, 1.0), plan_workers(fake, None, 0.5), plan_workers(fake, None, 0)
    (8, 16, 16)
    """
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    if num_workers is not None:
        need = num_workers * gpus_per_worker
        if need > gpus + 1e-9:
            print(
                f"warning: {num_workers} workers x {gpus_per_worker:g} GPUs need {need:g} GPUs; "
                f"the cluster has {gpus:g} now, so the run waits for more (an autoscaler)",
                file=sys.stderr,
            )
        return num_workers
    if gpus_per_worker > 0:
        n = int(gpus // gpus_per_worker + 1e-9)
        if n < 1:
            raise ScoringJobError(
                f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPUs; "
                "pass --num-workers to wait for an autoscaler, or drop --gpus-per-worker"
            )
        return n
    return max(1, int(float(resources.get("CPU", 1.0)) // CPUS_PER_WORKER))


__all__ = [
    "CPUS_PER_WORKER",
    "RAY_INSTALL_HINT",
    "RaySession",
    "import_ray",
    "plan_workers",
]
