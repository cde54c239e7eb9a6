"""A prepared dataset: its TFDS builder (or how to build it), the fields the model needs, and the
decoder that keeps a record's frames as JPEG bytes. The loader (pipeline), the sampler cache's
writer and the dataset tools read a dataset through here.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import manifest


class PassThrough(tfds.decode.Decoder):
    """Keeps the video as its list of JPEG strings, so only the frames we want get decoded."""

    def decode_example(self, serialized_example):
        return serialized_example

    def decode_example_np(self, serialized_example):
        return serialized_example

    def decode_batch_example_np(self, serialized_example):
        return serialized_example


def load_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The prepared builder, or an error that says how to build it."""
    import nsnet_jax.input_pipeline  # noqa: F401 - registers this project's builders

    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
        folder = name.split("/")[0]
        config = f" --config={name.split('/')[1]}" if "/" in name else ""
        raise FileNotFoundError(
            f"Dataset {name!r} is not built in {builder.data_dir}. Build it with: "
            f"tfds build input_pipeline/datasets/{folder}{config} "
            f"--data_dir={data_dir or '~/tensorflow_datasets'}"
        )
    formats = {str(f.value) for f in builder.info.available_file_formats()}
    formats.add(str(builder.info.file_format.value))
    if "array_record" not in formats:
        raise ValueError(
            f"Dataset {name!r} in {builder.data_dir} is stored as {sorted(formats)}; this "
            "pipeline reads array_record (random access). Rebuild with --file_format=array_record."
        )
    manifest.warn_if_stale(name, builder.data_dir)  # a list edited since the build
    return builder


def dataset_meta_fields(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
    """num_classes, class_names, num_frames, has_evidence and multi_label from a built dataset."""
    features = builder.info.features
    label = features["label"]
    meta = dict(builder.info.metadata or {})
    return dict(
        num_classes=int(label.num_classes),
        class_names=tuple(label.names),
        num_frames=int(features["video"].shape[0]),
        has_evidence=bool(meta.get("has_evidence", "evidence" in features)),
        multi_label=bool(meta.get("multi_label", False)),
    )
