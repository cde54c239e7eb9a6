"""Layers only point down (docs/layers.md): every import of every module in nsnet_jax/,
configs/ and input_pipeline/, function bodies included, read from the AST, goes to the module's
own unit or to a lower layer, and no modules import each other in a cycle.

LAYERS_ROOT=/path/to/another/checkout runs the same checks on that tree (e.g. an older commit).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(os.environ.get("LAYERS_ROOT") or Path(__file__).resolve().parents[1])
# folder -> the package it installs as (setup.cfg's package_dir)
PACKAGES = {
    "nsnet_jax": "nsnet_jax",
    "configs": "nsnet_jax.configs",
    "input_pipeline": "nsnet_jax.input_pipeline",
}

# Units from the bottom up: (layer, unit prefixes). A module belongs to the unit of its longest
# matching prefix and may import its own unit and any unit of a lower layer, nothing else.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("package names", ("nsnet_jax.package_names",)),
    ("foundations", ("nsnet_jax.errors", "nsnet_jax.config_fields", "nsnet_jax.configs")),
    (
        "base",
        (
            "nsnet_jax",  # the package's __init__ (the version) only: see _unit
            "nsnet_jax.sharding",
            "nsnet_jax.augment",
            "nsnet_jax.contracts",
            "nsnet_jax.checkpoint_io",
            "nsnet_jax.costs.timing",
            "nsnet_jax.flag_parsing",
            "nsnet_jax.locking",
            "nsnet_jax.config_upgrade",
        ),
    ),
    ("data", ("nsnet_jax.input_pipeline",)),
    ("models", ("nsnet_jax.models",)),
    ("weights", ("nsnet_jax.pretrained",)),
    ("costs", ("nsnet_jax.costs",)),
    ("library", ("nsnet_jax.inference", "nsnet_jax.train")),
    ("evaluation", ("nsnet_jax.evaluation",)),
    (
        "entry points",
        (
            "nsnet_jax.main",
            "nsnet_jax.predict",
            "nsnet_jax.export",
            "nsnet_jax.demo",
            "nsnet_jax.ablate",
            "nsnet_jax.diagnose",
            "nsnet_jax.flops",
            "nsnet_jax.compare",
            "nsnet_jax.pipeline_run",
            "nsnet_jax.cli",
            "nsnet_jax.config_checks",
        ),
    ),
    ("tools", ("nsnet_jax.bench",)),
]
ENTRY_POINTS = "entry points"  # one unit: the commands and the config checks they share

# Edges the layers alone would allow, ruled out: (source prefix, target prefix, why).
FORBIDDEN: list[tuple[str, str, str]] = [
    ("nsnet_jax.evaluation", "nsnet_jax.train", "evaluating a model needs no trainer"),
    ("nsnet_jax.train.step", "nsnet_jax.input_pipeline", "the step is a pure function of a batch"),
]

# Old `python -m` names kept working: one-line modules that run their new home's main.
SHIMS = {
    "nsnet_jax.input_pipeline.bench": "nsnet_jax.bench.input_rates",
    "nsnet_jax.input_pipeline.bench_video_io": "nsnet_jax.bench.video_io",
}


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of PACKAGES under `root`."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The scanned module an import of `name` loads (its longest known prefix), else None."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the scanned modules it imports anywhere in its source (function bodies too)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]  # else base itself
            for name in names:
                target = _resolve(name, modules)
                if target is not None and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def _unit(module: str) -> tuple[int, str]:
    """(layer index, unit prefix) of `module`: its longest matching unit prefix."""
    best = None
    for index, (layer, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "nsnet_jax" and _under(module, prefix)):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, ENTRY_POINTS if layer == ENTRY_POINTS else prefix)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS and docs/layers.md")
    return best


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path = ROOT) -> list[str]:
    """'source -> target (layer -> layer)' for each import that does not point down."""
    out = []
    for source, targets in sorted(import_graph(root).items()):
        for target in sorted(targets):
            (s_layer, s_unit), (t_layer, t_unit) = _unit(source), _unit(target)
            why = [w for src, dst, w in FORBIDDEN if _under(source, src) and _under(target, dst)]
            if why:
                out.append(f"{source} -> {target} ({why[0]})")
                continue
            if s_unit == t_unit or t_layer < s_layer:
                continue
            if SHIMS.get(source) == target:
                continue
            out.append(f"{source} -> {target} ({LAYERS[s_layer][0]} -> {LAYERS[t_layer][0]})")
    return out


def cycles(root: Path = ROOT) -> list[list[str]]:
    """The import cycles between modules: strongly connected components of more than one module."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_points_down():
    assert violations() == []


def test_no_import_cycles():
    assert cycles() == []


def test_nothing_in_the_library_imports_the_tools():
    graph = import_graph()
    users = {
        source
        for source, targets in graph.items()
        if any(t.startswith("nsnet_jax.bench") for t in targets)
        and not source.startswith("nsnet_jax.bench")
        and source not in SHIMS
    }
    assert users == set()


def test_the_scan_sees_imports_inside_function_bodies():
    # input_pipeline.pipeline imports the sampler cache only inside create_dataset
    assert (
        "nsnet_jax.input_pipeline.sampler_cache"
        in import_graph()["nsnet_jax.input_pipeline.pipeline"]
    )


def _calls(tree: ast.AST) -> set[str]:
    """Dotted names of everything called in `tree`: 'cli.run', 'run_tool', ..."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.add(ast.unparse(node.func))
    return out


def test_every_command_parses_absl_flags_through_cli_or_run_tool():
    modules = _modules(ROOT)
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    commands = [
        name
        for name, tree in trees.items()
        if any(
            isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
            for node in tree.body
        )
    ]
    assert len(commands) >= 20, commands
    imported = {
        name: {
            a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
        }
        for name, tree in trees.items()
    }
    assert [name for name, names in imported.items() if "argparse" in names] == []
    for name in commands:
        home = name  # a shim runs the main of the module it imports it from
        for node in ast.walk(trees[name]):
            if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names):
                home = node.module
        assert {"cli.run", "run_tool"} & _calls(trees[home]), f"{name}: parse with cli or run_tool"
