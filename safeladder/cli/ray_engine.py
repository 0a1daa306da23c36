"""Moved to ``safeladder.scoring.ray_engine`` (the engine) and ``safeladder.scoring.ray_cluster``
(the Ray session); these names stay importable from here for older code."""

from safeladder.scoring.ray_engine import (
    RAY_INSTALL_HINT,
    ClusterReward,
    RayScorer,
    RaySession,
    import_ray,
    plan_workers,
)

__all__ = [
    "RAY_INSTALL_HINT",
    "ClusterReward",
    "RayScorer",
    "RaySession",
    "import_ray",
    "plan_workers",
]
