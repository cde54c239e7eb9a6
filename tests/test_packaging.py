"""Installed names that cannot collide (docs/layout.md): configs/ and input_pipeline/ install as
nsnet_jax.configs and nsnet_jax.input_pipeline; the folders' own names still work from the repo
root as the same modules; documented commands run from an installed copy elsewhere."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nsnet_jax import flag_parsing
from nsnet_jax.package_names import FOLDERS

ROOT = Path(__file__).resolve().parents[1]


def _setup_options() -> tuple[list[str], dict[str, str]]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    packages = parser["options"]["packages"].split()
    lines = [line.split("=") for line in parser["options"]["package_dir"].split("\n") if line]
    package_dir = {k.strip(): v.strip() for k, v in lines}
    return packages, package_dir


def test_setup_cfg_lists_every_package_under_its_nsnet_jax_name():
    packages, package_dir = _setup_options()
    assert package_dir == {new: old for old, new in FOLDERS.items()}
    found = set()
    for folder in ("nsnet_jax", *FOLDERS):
        prefix = "nsnet_jax" if folder == "nsnet_jax" else FOLDERS[folder]
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((prefix, *parts)))
    assert sorted(packages) == sorted(found)
    assert all(p.split(".")[0] == "nsnet_jax" for p in packages)


def _python(code: str, cwd: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_old_names_from_the_repo_root_are_the_same_modules_and_register_builders_once():
    out = _python(
        "import json, input_pipeline, configs.default as old_default\n"
        "import input_pipeline.datasets.salient_fashion.salient_fashion_dataset_builder as old\n"
        "import nsnet_jax.input_pipeline as new_pkg, nsnet_jax.configs.default as new_default\n"
        "from nsnet_jax.input_pipeline.datasets.salient_fashion import "
        "salient_fashion_dataset_builder as new\n"
        "import tensorflow_datasets as tfds\n"
        "print(json.dumps(dict(package=input_pipeline is new_pkg, builder=old is new,\n"
        "  config=old_default is new_default, name=old.__name__,\n"
        "  registered=tfds.builder_cls('salient_fashion').__module__)))\n",
        ROOT,
    )
    got = json.loads(out.strip().splitlines()[-1])
    module = "nsnet_jax.input_pipeline.datasets.salient_fashion.salient_fashion_dataset_builder"
    assert got == dict(package=True, builder=True, config=True, name=module, registered=module)


def test_old_python_m_name_runs_from_the_repo_root():
    result = subprocess.run(
        [sys.executable, "-m", "input_pipeline.inspect", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "python -m nsnet_jax.input_pipeline.inspect" in result.stdout


def test_a_checkout_on_pythonpath_loads_its_own_folders(tmp_path):
    """Without installing (a device machine): the packages come from the checkout that supplied
    nsnet_jax, never from an editable install of another one."""
    copy = tmp_path / "checkout"
    for name in ("nsnet_jax", "configs", "input_pipeline"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "setup.cfg").write_text((ROOT / "setup.cfg").read_text())
    out = _python(
        "import nsnet_jax.configs as c, nsnet_jax.input_pipeline.decode as d\n"
        "import tensorflow_datasets as tfds\n"
        "print(c.__file__); print(d.__file__)\n"
        f"builder = tfds.builder('salient_fashion/small', data_dir={str(tmp_path)!r})\n"
        "print(builder.code_path); print(builder.info.name)\n",
        tmp_path,
        PYTHONPATH=str(copy),
    )
    sf = copy / "input_pipeline" / "datasets" / "salient_fashion"
    expected = [
        copy / "configs" / "__init__.py",
        copy / "input_pipeline" / "decode.py",
        sf / "salient_fashion_dataset_builder.py",  # TFDS reads the builder's files from here
        "salient_fashion",
    ]
    assert out.split()[-4:] == [str(p) for p in expected]


def test_config_file_falls_back_to_the_installed_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    installed = flag_parsing.config_file("configs/salient_fashion.py:arg")
    assert installed == str(ROOT / "configs" / "salient_fashion.py") + ":arg"
    assert flag_parsing.config_file("configs/nope.py") == "configs/nope.py"  # absl names it
    assert flag_parsing.config_file("mine.py") == "mine.py"
    argv = ["prog", "--config", "configs/salient_fashion.py", "--config=configs/activitynet.py"]
    assert flag_parsing.config_files_in(argv)[2:] == [
        str(ROOT / "configs" / "salient_fashion.py"),
        f"--config={ROOT / 'configs' / 'activitynet.py'}",
    ]


@pytest.mark.slow
def test_an_installed_wheel_has_no_top_level_configs_and_runs_documented_commands(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside it
    for name in ("nsnet_jax", "configs", "input_pipeline"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(source), "-w", str(wheels)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist() if ".dist-info" not in name}
    assert tops == {"nsnet_jax"}
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    flops = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.flops", "--config=configs/salient_fashion.py"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert flops.returncode == 0, flops.stderr[-3000:]
    assert json.loads(flops.stdout.strip().splitlines()[-1])["num_select"] == 2
    where = _python(
        "import nsnet_jax.input_pipeline as p, tensorflow_datasets as tfds\n"
        "print(p.__file__)\n"
        f"print(tfds.builder('salient_fashion/small', data_dir={str(tmp_path)!r}).code_path)\n",
        elsewhere,
        PYTHONPATH=str(target),
    )
    package = target / "nsnet_jax" / "input_pipeline"
    assert where.split()[-2:] == [
        str(package / "__init__.py"),
        str(package / "datasets" / "salient_fashion" / "salient_fashion_dataset_builder.py"),
    ]
