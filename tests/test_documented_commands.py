"""Every `python -m` command that README.md and docs/ show exists and knows the flags they use.

Each documented module runs once with --helpfull in its own process (absl exits 1 after help, the
config-less tools 0); every `--flag` the docs pass it must be in that list, so a renamed or dropped
flag fails here before a reader meets it. Config overrides (`--config.a.b=...`) are checked by
the config's own validation, not here.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def documented_commands() -> dict[str, set[str]]:
    """module -> the flags the docs pass it, from each `python -m MODULE ...` in README and docs."""
    found: dict[str, set[str]] = {}
    for path in [ROOT / "README.md", *sorted(Path(p) for p in glob.glob(str(ROOT / "docs/*.md")))]:
        text = re.sub(r"\\\n|(?<=python -m)\n|(?<=python)\n(?=-m )", " ", path.read_text())
        text = re.sub(r"\{[^}\n]*\}", "X", text)  # --config={default|fcvid}: one placeholder
        for line in text.splitlines():
            for m in re.finditer(r"python3? -m ([a-z_][\w.]*\w)(?![.<\w])([^`|;&]*)", line):
                if m.group(1) == "pytest":
                    continue
                flags = re.findall(r"(?<![\w.-])--([A-Za-z_]\w*)(?![.\w])", m.group(2))
                found.setdefault(m.group(1), set()).update(flags)
    return found


COMMANDS = documented_commands()


def test_the_docs_show_the_main_commands():
    for module in (
        "nsnet_jax.main",
        "nsnet_jax.predict",
        "nsnet_jax.input_pipeline.build",
        "nsnet_jax.demo",
    ):
        assert module in COMMANDS


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_documented_command_parses_its_documented_flags(module):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", module, "--helpfull"],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), out[-3000:]
    assert "Traceback (most recent call last)" not in out, out[-3000:]
    known = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", out, flags=re.M))
    assert known, f"{module} --helpfull listed no flags:\n{out[-2000:]}"
    missing = sorted(COMMANDS[module] - known)
    assert not missing, f"{module}: the docs pass --{', --'.join(missing)}, which it does not know"
