"""The repo's `configs/` and `input_pipeline/` folders are the packages `nsnet_jax.configs` and
`nsnet_jax.input_pipeline`: installed under those names (setup.cfg's package_dir), so they cannot
collide with another project's top-level `configs` or `input_pipeline` in site-packages.

Two finders keep every way of running the code on those names, each module loaded once (a TFDS
builder registers its name once):
- `RepoFolders`: a source checkout run without installing it (PYTHONPATH=repo, a machine with no
  package index) loads the two packages from the folders beside `nsnet_jax/`.
- `OldNames`: the folders' own names, importable from the repo root (`import input_pipeline`,
  `python -m input_pipeline.build`, a config file doing `from configs import default`), give the
  same module objects as the new names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FOLDERS = {"configs": "nsnet_jax.configs", "input_pipeline": "nsnet_jax.input_pipeline"}


class RepoFolders(importlib.abc.MetaPathFinder):
    """nsnet_jax.configs and .input_pipeline from a checkout's folders beside nsnet_jax/."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 - importlib API
        folder = {new: old for old, new in FOLDERS.items()}.get(fullname)
        if folder is None:
            return None
        init = self.repo / folder / "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)]
        )


def install_repo_folders(package_dir: Path) -> None:
    """Called by nsnet_jax/__init__.py: in a source checkout whose folders are not installed
    inside nsnet_jax/, add `RepoFolders` ahead of the other finders (an editable install of
    another checkout must not supply this checkout's packages)."""
    repo = package_dir.parent
    if (package_dir / "configs").exists() or not (repo / "setup.cfg").is_file():
        return  # an installed copy: the packages sit inside nsnet_jax/
    if not all((repo / folder / "__init__.py").is_file() for folder in FOLDERS):
        return
    if not any(isinstance(f, RepoFolders) and f.repo == repo for f in sys.meta_path):
        sys.meta_path.insert(0, RepoFolders(repo))


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module object of its new name (and runs it for `python -m`)."""

    def __init__(self, new: str, spec: importlib.machinery.ModuleSpec) -> None:
        self.new, self.spec = new, spec

    def create_module(self, spec):  # noqa: ANN001, ANN201 - importlib API
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the old name's spec: put it back

    def get_code(self, fullname: str):  # noqa: ANN201 - runpy runs `python -m OLD.NAME` with it
        return self.spec.loader.get_code(self.new)


class OldNames(importlib.abc.MetaPathFinder):
    """`input_pipeline.x` -> `nsnet_jax.input_pipeline.x` (and `configs.x`), as one module."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 - importlib API
        old = fullname.split(".")[0]
        if old not in FOLDERS or fullname == old:
            return None
        new = FOLDERS[old] + fullname[len(old) :]
        spec = importlib.util.find_spec(new)
        if spec is None:
            return None
        return importlib.util.spec_from_loader(
            fullname,
            _Alias(new, spec),
            origin=spec.origin,
            is_package=spec.submodule_search_locations is not None,
        )


def become(old: str) -> None:
    """Called by a folder's __init__.py when it is imported under its old name: from then on the
    old name and its submodules are the new package's modules."""
    if not any(isinstance(f, OldNames) for f in sys.meta_path):
        sys.meta_path.insert(0, OldNames())
    sys.modules[old] = importlib.import_module(FOLDERS[old])
