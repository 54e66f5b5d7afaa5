"""ptc on a Ray cluster: `RayExecutor` runs each execution on one of N Ray actors (the `ptc[ray]` extra).

Importing this package needs no Ray; making a RayExecutor without it raises MissingExtraError.
"""

from ptc.ray.executor import RayExecutor
from ptc.ray.session import RaySession

__all__ = ["RayExecutor", "RaySession"]
