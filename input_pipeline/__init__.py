"""nsnet_jax.input_pipeline (this folder, installed under that name): TFDS video builders and
a random-access, multi-host video loader.

Importing the package registers the builders, so `tfds.builder('salient_fashion')` works. Without
TensorFlow Datasets installed (e.g. a GPU box that only runs `launch/gpu_check.py`), the package
still imports, and the modules that need no TFDS (decode, gpu_decode) work.
"""

# Imported as `input_pipeline` (the folder's own name, from the repo root): see package_names.
if __name__ == "input_pipeline":
    from nsnet_jax.package_names import become

    become(__name__)
else:
    try:
        from nsnet_jax.input_pipeline import datasets  # noqa: F401
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("tensorflow_datasets", "tensorflow"):
            raise
