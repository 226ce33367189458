"""The package's layering, read from the sources with ``ast`` (nothing of spnas imported).

Layer ranks (an import may only go to the same or a lower rank):

  0  spnas (the package __init__), spnas.errors, spnas.fileio, spnas.space,
     spnas.choices, spnas.layer_plan, spnas.configs_path, spnas.configs.* (the root
     configs/ folder)
  1  spnas.tables.*, spnas.arch.*
  2  spnas.superkernel.*, spnas.data.*
  3  spnas.search.supernet, spnas.search.target, spnas.search.limits, spnas.models.*
  4  spnas.train.*, spnas.export.*, spnas.latency.*, spnas.search.callbacks,
     spnas.search.report, spnas.search.budgets
  5  spnas.cli, spnas.search.run, spnas.train.run, spnas.search.random_search,
     spnas.pipeline (and anything under it), every main.py / *_main.py and
     spnas.latency.cli* (the entry points)

A package ``__init__`` no pattern names (``spnas.search``) gets the lowest rank of
the modules inside it: Python runs it whenever any of them is imported, so it must
not pull in more than its lowest module may. A module no rule places fails the
test (place it in RANKS on purpose).

Also: no import cycles between spnas modules, none between subpackages (a top-level
module such as spnas.space is its own unit); every import of spnas or of
TensorFlow/Keras/JAX at module top, except inside spnas/cli.py (the one seam,
``cli.call``); file sizes (500 lines, entry points 100). These tests document the
target of the re-layering: where the code is not there yet they fail, naming each
offender.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.helpers import REPO

SPNAS = REPO / "spnas"
CONFIGS = REPO / "configs"  # installed as spnas.configs (setup.py)
SEAM = "spnas.cli"  # the one module allowed a function-level (lazy) import
HEAVY = ("tensorflow", "tensorflow_datasets", "keras", "jax")  # tensorflow_datasets loads TF
MAX_LINES = 500
MAX_ENTRY_POINT_LINES = 100

# (rank, patterns); the first rank with a matching pattern wins, so the specific
# rank-5 and rank-3/4 names of spnas.search come before the wide ones.
# "spnas.x.*" also matches spnas.x itself.
RANKS = (
    (5, ("spnas.cli", "spnas.cli_config", "spnas.search.run", "spnas.train.run", "spnas.search.random_search",
         "spnas.pipeline", "spnas.pipeline.*", "*.main", "*_main", "spnas.latency.cli*")),
    (3, ("spnas.search.supernet", "spnas.search.target", "spnas.search.limits", "spnas.models.*",
         "spnas.config_check")),
    (4, ("spnas.train.*", "spnas.export.*", "spnas.latency.*", "spnas.search.callbacks",
         "spnas.search.report", "spnas.search.budgets")),
    (2, ("spnas.superkernel.*", "spnas.data.*")),
    (1, ("spnas.tables.*", "spnas.arch.*", "spnas.workdir")),
    (0, ("spnas", "spnas.errors", "spnas.fileio", "spnas.space", "spnas.choices",
         "spnas.layer_plan", "spnas.configs_path",
         "spnas.configs.*")),
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module: a known spnas module, or a top-level name
    file: str  # relative to the repository
    line: int
    top: bool  # at module level (possibly under if/try), not in a def or class
    text: str  # the statement as written

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _module_files() -> dict[str, pathlib.Path]:
    files = {}
    for root, package in ((SPNAS, "spnas"), (CONFIGS, "spnas.configs")):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([package, *parts])] = path
    return files


MODULES = _module_files()
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*") and module == pattern[:-2]:
        return True
    return fnmatch.fnmatchcase(module, pattern)


def _pattern_rank(module: str) -> int | None:
    for rank, patterns in RANKS:
        if any(_matches(module, p) for p in patterns):
            return rank
    return None


def rank_of(module: str) -> int | None:
    rank = _pattern_rank(module)
    if rank is None and module in PACKAGES:
        inside = [_pattern_rank(m) for m in MODULES if m.startswith(module + ".")]
        inside = [r for r in inside if r is not None]
        rank = min(inside) if inside else None
    return rank


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <module> import ...`` (relative imports too)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _spnas_target(name: str) -> str:
    """The longest known spnas module that ``name`` (a dotted import path) names."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return name


def _imports_of(module: str, path: pathlib.Path) -> list[Import]:
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    found: list[Import] = []

    def add(target: str, node: ast.stmt, top: bool):
        text = ast.get_source_segment(source, node) or ast.dump(node)
        text = " ".join(text.split())
        found.append(Import(module, target, _rel(path), node.lineno, top, text))

    def visit(node: ast.AST, top: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    name = alias.name
                    add(_spnas_target(name) if name.split(".")[0] == "spnas" else name, child, top)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", child)
                if base.split(".")[0] == "spnas":
                    for alias in child.names:  # ``from spnas.x import y``: y may be a module
                        add(_spnas_target(f"{base}.{alias.name}"), child, top)
                else:
                    add(base, child, top)
            elif isinstance(child, ast.Call) and _dynamic_import_name(child) is not None:
                name = _dynamic_import_name(child)
                add(_spnas_target(name) if name.split(".")[0] == "spnas" else name, child, top)
                visit(child, top)
            else:
                nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
                                    | ast.ClassDef)
                visit(child, top and not nested)

    visit(tree, True)
    return found


def _dynamic_import_name(call: ast.Call) -> str | None:
    """The constant module name of ``importlib.import_module("x")`` / ``__import__("x")``."""
    func = call.func
    named = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")
    if named and call.args and isinstance(call.args[0], ast.Constant) \
            and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


IMPORTS = list(dict.fromkeys(imp for m, p in MODULES.items() for imp in _imports_of(m, p)))
SPNAS_IMPORTS = [imp for imp in IMPORTS if imp.target in MODULES]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_sources_were_found():
    assert "spnas.space" in MODULES and "spnas.cli" in MODULES and "spnas.configs.default" in MODULES
    assert len(SPNAS_IMPORTS) > 50


def test_the_checker_sees_lazy_relative_and_dynamic_imports(tmp_path):
    path = tmp_path / "supernet.py"
    path.write_text(
        "import os\n"
        "from . import target\n"
        "from ..train import optim\n"
        "try:\n    import jax\nexcept ImportError:\n    jax = None\n"
        "def f():\n    import keras\n    from spnas.search.run import run\n"
        "    return importlib.import_module('spnas.pipeline')\n"
        "class C:\n    from spnas import space\n")
    found = {(i.target, i.top) for i in _imports_of("spnas.search.supernet", path)}
    assert found == {("os", True), ("spnas.search.target", True), ("spnas.train.optim", True),
                     ("jax", True), ("keras", False), ("spnas.search.run", False),
                     ("spnas.pipeline", False), ("spnas.space", False)}
    assert rank_of("spnas.search.supernet") == 3 and rank_of("spnas.train.optim") == 4
    assert rank_of("spnas.search") == 3  # a package __init__: its lowest module's rank
    assert rank_of("spnas.latency.cli_profile") == 5 and rank_of("spnas.train.main") == 5
    assert _cycles({"a": {"b"}, "b": {"c", "a"}, "c": set(), "d": {"d"}}) == [["a", "b"]]


def test_every_module_has_a_rank():
    unplaced = sorted(_rel(p) for m, p in MODULES.items() if rank_of(m) is None)
    assert not unplaced, _report("Modules no layer rule places: add them to RANKS", unplaced)


def test_imports_go_to_the_same_or_a_lower_rank():
    bad = []
    for imp in SPNAS_IMPORTS:
        src, dst = rank_of(imp.source), rank_of(imp.target)
        if src is not None and dst is not None and dst > src:
            bad.append(f"{imp.where()}   [{imp.source} (rank {src}) -> {imp.target} (rank {dst})]")
    assert not bad, _report("Imports that go up the layers", bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return sorted(out)


def _describe_cycles(cycles, edge_sites: dict[tuple[str, str], list[Import]]) -> list[str]:
    lines = []
    for component in cycles:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        for (a, b), sites in sorted(edge_sites.items()):
            if a in members and b in members:
                lines.append(f"    {a} -> {b}: " + "; ".join(s.where() for s in sites[:3]))
    return lines


def test_no_import_cycles_between_modules():
    edges: dict[str, set[str]] = {}
    sites: dict[tuple[str, str], list[Import]] = {}
    for imp in SPNAS_IMPORTS:
        if imp.source != imp.target:
            edges.setdefault(imp.source, set()).add(imp.target)
            sites.setdefault((imp.source, imp.target), []).append(imp)
    cycles = _cycles(edges)
    assert not cycles, _report("Import cycles between spnas modules",
                               _describe_cycles(cycles, sites))


def unit_of(module: str) -> str:
    """spnas.x for anything inside spnas.x (a subpackage, or a top-level module itself)."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_subpackages():
    edges: dict[str, set[str]] = {}
    sites: dict[tuple[str, str], list[Import]] = {}
    for imp in SPNAS_IMPORTS:
        a, b = unit_of(imp.source), unit_of(imp.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
            sites.setdefault((a, b), []).append(imp)
    cycles = _cycles(edges)
    assert not cycles, _report("Import cycles between spnas subpackages",
                               _describe_cycles(cycles, sites))


def _guarded(name: str) -> bool:
    return name.split(".")[0] in ("spnas", *HEAVY)


def test_no_function_level_imports_outside_the_cli_seam():
    bad = [f"{imp.where()}   [in {imp.source}]" for imp in IMPORTS
           if not imp.top and imp.source != SEAM and _guarded(imp.target)]
    assert not bad, _report(
        "Imports of spnas/TensorFlow/Keras/JAX inside a function or class (only "
        "spnas/cli.py's call may import lazily)", bad)


def _line_count(path: pathlib.Path) -> int:
    return len(path.read_text().splitlines())


def _entry_point_modules() -> set[str]:
    """main.py, *_main.py, spnas.latency.cli*, and what ``spnas-pipeline`` runs."""
    names = {m for m in MODULES if m.startswith("spnas.") and (
        m.endswith(".main") or m.endswith("_main") or _matches(m, "spnas.latency.cli*"))}
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # 3.10: the console script's documented target
        pipeline = "spnas.pipeline"
    else:
        scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
        pipeline = _spnas_target(scripts["spnas-pipeline"].partition(":")[0])
    if pipeline in MODULES:
        names.add(pipeline)
    return names


def test_file_sizes():
    too_long = [f"{_rel(p)}: {n} lines (limit {MAX_LINES})" for m, p in sorted(MODULES.items())
                if p.is_relative_to(SPNAS) and (n := _line_count(p)) > MAX_LINES]
    entry_points = _entry_point_modules()
    assert "spnas.search.main" in entry_points
    too_long += [f"{_rel(MODULES[m])}: {n} lines (entry point, limit {MAX_ENTRY_POINT_LINES})"
                 for m in sorted(entry_points)
                 if (n := _line_count(MODULES[m])) > MAX_ENTRY_POINT_LINES]
    assert not too_long, _report("Files over the size limits", too_long)


CONFIG_FILES = sorted(p.name for p in CONFIGS.glob("*.py") if not p.name.startswith("_"))

# A config (it defines get_config) is loaded as the CLI loads it; a helper module of
# the configs (no get_config) is imported as spnas.configs.<name>.
LOAD_CONFIG = """
import importlib, sys
from spnas.configs_path import load_config
name, is_config = sys.argv[1], sys.argv[2] == "1"
if is_config:
    assert load_config(name) is not None, "get_config() returned None"
else:
    importlib.import_module("spnas.configs." + name[:-3])
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
loaded = sorted(m for m in sys.modules if m.startswith("spnas."))
assert not heavy, f"loading configs/{{name}} imported {{heavy}}; spnas modules loaded: {{loaded}}"
"""


def _defines_get_config(path: pathlib.Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == "get_config" for n in tree.body)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_loads_without_keras_or_tensorflow(name):
    is_config = "1" if _defines_get_config(CONFIGS / name) else "0"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", LOAD_CONFIG.format(heavy=HEAVY), name, is_config],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"configs/{name}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
