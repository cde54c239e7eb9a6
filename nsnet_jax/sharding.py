"""The data-parallel mesh: one `data` axis over every device of every process.

The mesh uses Auto axes so XLA's partitioner propagates the batch sharding through the models and
`with_sharding_constraint` can pin outputs; the same code runs on one CPU device and on a pod.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices: list | None = None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest whole."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_global_batch(global_batch: int, mesh: Mesh, field: str = "batch_size") -> None:
    """The global batch splits evenly over the mesh's devices; the error names the config field."""
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(
            f"config.{field}={global_batch} is not divisible by the mesh's {n} devices; "
            f"choose a multiple of {n} (e.g. --config.{field}={max(n, global_batch // n * n)})"
        )


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, replicated(mesh))


def host_local(x: jax.Array, mesh: Mesh) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in its local batch order."""
    from jax.experimental import multihost_utils

    local = multihost_utils.global_array_to_host_local_array(x, mesh, PartitionSpec("data"))
    return np.asarray(local)
