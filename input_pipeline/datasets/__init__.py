"""TFDS builders of this project; importing this module registers them with TFDS."""

from nsnet_jax.input_pipeline.datasets.salient_fashion import salient_fashion_dataset_builder  # noqa: F401
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder  # noqa: F401
