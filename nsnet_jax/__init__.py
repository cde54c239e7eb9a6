"""NSNet: non-saliency suppression frame sampling for efficient video recognition, in JAX/Flax."""

from pathlib import Path

from nsnet_jax.package_names import install_repo_folders

__version__ = "0.1.0"

install_repo_folders(Path(__file__).resolve().parent)  # nsnet_jax.configs, .input_pipeline
