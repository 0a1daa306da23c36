"""``safeladder serve --ray``: the reward server as Ray Serve replicas, typically one per GPU.

Each replica builds the reward once and runs ``create_app(reward, settings)``: the same
FastAPI app ``safeladder serve`` runs under uvicorn, with its cross-request dynamic batcher,
limits, API key, ``/health`` and ``/metrics``. Ray Serve's HTTP proxy (on ``settings.host`` /
``settings.port``, loopback by default, on the node that runs this code) spreads requests
over the replicas, wherever they run, so each replica still coalesces the one-sample requests
OpenRLHF sends into GPU batches.

How the knobs map (``ray_serve_application``):

- ``num_replicas`` = ``replicas``; ``ray_actor_options`` = ``{"num_cpus": cpus_per_replica,
  "num_gpus": gpus_per_replica}`` (1 GPU each: one replica per GPU of the cluster);
- ``max_ongoing_requests`` (requests one replica holds at once; Ray's default is 5, which
  would cap a batch at 5 rows) = ``2 x max_batch_size`` (at least 64, at most ``max_queue``):
  one batch runs while the next one fills;
- ``max_queued_requests`` (requests waiting in Ray's router) = ``max_queue``; past it Ray
  answers 503, as the server's own bounded queue does.

``/metrics`` and ``/health`` describe the replica that answered the request (Ray Serve exports
its own cluster-wide metrics). Replicas need ``ray[serve]`` >= 2.47 (an ingress built on the
replica from a builder function: ray-project/ray PR #52892), and every node needs the reward's
checkpoints and custom modules at the same paths.

Example::

    import ray
    from safeladder.rewards import parse_reward_config
    from safeladder.serving import ServeSettings
    from safeladder.serving.ray_serve import RayServeOptions, start_ray_serve, stop_ray_serve

    ray.init()
    url = start_ray_serve(parse_reward_config(None), ServeSettings(port=8000),
                          RayServeOptions(replicas=2, gpus_per_replica=1))
    ...  # POST f"{url}/get_reward"
    stop_ray_serve(RayServeOptions().app_name, shutdown=True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from safeladder.errors import ConfigError
from safeladder.rewards.config import RewardConfig
from safeladder.serving.settings import ServeSettings

#: Oldest Ray whose ``serve.ingress`` accepts a builder function run on each replica.
MIN_RAY_VERSION = (2, 47)
RAY_INSTALL_HINT = "pip install 'safeladder[ray]'"


class RayServeOptions(BaseModel):
    """How ``safeladder serve --ray`` deploys the server on a Ray cluster."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: int = Field(
        default=1, ge=1, description="Ray Serve replicas; each builds the reward once."
    )
    gpus_per_replica: float = Field(
        default=0.0,
        ge=0.0,
        description="GPUs each replica reserves (1: one replica per GPU; 0.5: two share one).",
    )
    cpus_per_replica: float = Field(
        default=1.0, ge=0.0, description="Logical CPUs each replica reserves."
    )
    app_name: str = Field(
        default="safeladder", min_length=1, description="Ray Serve application name."
    )


def import_serve() -> Any:
    """``ray.serve``, or a ``ConfigError`` saying how to install it (never an ImportError)."""
    try:
        ray = importlib.import_module("ray")
        serve = importlib.import_module("ray.serve")
    except ImportError as exc:
        raise ConfigError(
            f"safeladder serve --ray needs Ray Serve ({exc}); install it with: {RAY_INSTALL_HINT}"
        ) from None
    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_RAY_VERSION:
        need = ".".join(map(str, MIN_RAY_VERSION))
        raise ConfigError(
            f"safeladder serve --ray needs ray[serve] >= {need} (replicas build the app from a "
            f"builder function); this is ray {ray.__version__}: pip install -U 'ray[serve]>={need}'"
        )
    return serve


def _app_builder(config: RewardConfig, settings: ServeSettings) -> Callable[[], Any]:
    """A function (pickled by value into each replica) that builds the reward and the app."""

    def build_safeladder_app() -> Any:
        from safeladder.rewards import Reward
        from safeladder.serving.app import create_app

        reward = Reward(config)
        try:
            # close_reward: the app's shutdown (run when Ray stops the replica) closes it.
            return create_app(reward, settings, close_reward=True)
        except BaseException:
            reward.close()
            raise

    return build_safeladder_app


def plan_replicas(cluster_gpus: float, replicas: int | None, gpus_per_replica: float) -> int:
    """``replicas``, else one per ``gpus_per_replica`` GPUs of the cluster, else 1.

    >>> plan_replicas(8.0, None, 1.0), plan_replicas(8.0, None, 0.5), plan_replicas(8.0, 3, 1.0)
    (8, 16, 3)
    >>> plan_replicas(0.0, None, 0.0)
    1
    """
    if replicas is not None:
        return replicas
    if gpus_per_replica <= 0:
        return 1
    n = int(cluster_gpus // gpus_per_replica + 1e-9)
    if n < 1:
        raise ConfigError(
            f"--gpus-per-replica {gpus_per_replica:g}: the Ray cluster has {cluster_gpus:g} GPUs; "
            "pass --replicas to wait for an autoscaler, or drop --gpus-per-replica"
        )
    return n


def max_ongoing_requests(settings: ServeSettings) -> int:
    """Requests one replica holds at once: room for a running batch and a filling one.

    >>> max_ongoing_requests(ServeSettings(max_batch_size=64))
    128
    >>> max_ongoing_requests(ServeSettings(max_batch_size=1, max_queue=8, max_request_samples=8))
    8
    """
    return max(1, min(settings.max_queue, max(64, 2 * settings.max_batch_size)))


def ray_serve_application(
    config: RewardConfig, settings: ServeSettings, options: RayServeOptions
) -> Any:
    """The bound Ray Serve application (``serve.run`` it); see the module docstring."""
    serve = import_serve()
    ingress = serve.ingress(_app_builder(config, settings))()
    deployment = serve.deployment(
        ingress,
        name="SafeladderReward",
        num_replicas=options.replicas,
        ray_actor_options={
            "num_cpus": options.cpus_per_replica,
            "num_gpus": options.gpus_per_replica,
        },
        max_ongoing_requests=max_ongoing_requests(settings),
        max_queued_requests=settings.max_queue,
        # In-flight requests finish before a replica stops (as uvicorn's graceful shutdown).
        graceful_shutdown_timeout_s=settings.request_timeout_s + 5.0,
        # One log line per request costs CPU on one-sample traffic (/metrics counts requests).
        logging_config={"enable_access_log": False},
    )
    return deployment.bind()


def start_ray_serve(config: RewardConfig, settings: ServeSettings, options: RayServeOptions) -> str:
    """Deploy on the Ray this process is connected to; returns the base URL once every
    replica is up (``serve.run`` waits for them). Ray must already be initialized."""
    if settings.port == 0:
        raise ConfigError("--port 0 (any free port) is not supported with --ray; pick a port")
    serve = import_serve()
    app = ray_serve_application(config, settings, options)
    # One HTTP proxy, on this node: trainers point at this host. (Ray's default differs
    # across versions; a cluster behind a load balancer can run `serve start` itself.)
    serve.start(
        proxy_location="HeadOnly", http_options={"host": settings.host, "port": settings.port}
    )
    running = _proxy_address(serve)
    if running is not None and running != (settings.host, settings.port):
        # Ray Serve keeps one HTTP config per cluster: a later serve.start with another port
        # only logs that it is ignored, and the app would answer on the old address.
        raise ConfigError(
            f"Ray Serve is already running on this cluster with its HTTP proxy on "
            f"{running[0]}:{running[1]}, not {settings.host}:{settings.port}; Ray keeps one "
            f"proxy address per cluster: serve with --host {running[0]} --port {running[1]}, "
            "or stop Ray Serve first (`serve shutdown`)"
        )
    serve.run(app, name=options.app_name, route_prefix="/")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def _proxy_address(serve: Any) -> tuple[str, int] | None:
    """``(host, port)`` of the running Ray Serve HTTP proxy, or None when Ray does not say.

    Ray has no public call for it; ``serve.context._get_global_client().http_config`` has held
    it since Ray 2.0. Any failure means "unknown", never an error of its own.
    """
    try:
        config = serve.context._get_global_client().http_config
        return str(config.host), int(config.port)
    except Exception:
        return None


def stop_ray_serve(app_name: str = "safeladder", *, shutdown: bool = False) -> None:
    """Delete the application (replicas drain their queues and close the reward); with
    ``shutdown``, also stop Ray Serve's controller and proxies."""
    serve = import_serve()
    serve.delete(app_name)
    if shutdown:
        serve.shutdown()


__all__ = [
    "MIN_RAY_VERSION",
    "RayServeOptions",
    "import_serve",
    "max_ongoing_requests",
    "plan_replicas",
    "ray_serve_application",
    "start_ray_serve",
    "stop_ray_serve",
]
