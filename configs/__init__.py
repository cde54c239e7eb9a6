"""nsnet_jax.configs (this folder, installed under that name): one file per experiment."""

# Imported as `configs` (the folder's own name, from the repo root): see package_names.
if __name__ == "configs":
    from nsnet_jax.package_names import become

    become(__name__)
