"""Where a builder's files are: TFDS derives a builder's folder (its checksums and metadata) from
the module name, top-level package first. The builders' modules are named
`nsnet_jax.input_pipeline.datasets...` while a checkout keeps them in `input_pipeline/` beside
`nsnet_jax/` (nsnet_jax/package_names.py), so each builder names its own file instead."""

from __future__ import annotations

import sys

import tensorflow_datasets as tfds
from etils import epath


class FileLocated:
    """Mixin for a TFDS builder: `code_path` is the file that defines the builder class and
    `pkg_dir_path` (TFDS reads metadata files there) its folder."""

    def __init_subclass__(cls, **kwargs) -> None:  # noqa: ANN003 - passed on to TFDS
        super().__init_subclass__(**kwargs)
        cls.pkg_dir_path = epath.Path(sys.modules[cls.__module__].__file__).parent

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(sys.modules[cls.__module__].__file__)
