"""Architecture rules checked on the source text (AST), not by importing it.

1. No private name crosses a module boundary: a module never imports ``_name`` from another
   xreid module, nor reads ``module._name`` of an imported xreid module, nor calls
   ``obj._name`` where ``_name`` is a private attribute defined only by *another* xreid module
   (e.g. a backbone's private method from the weight loader). Dunder names are fine, and so
   are the public names of private shared modules (``xreid._validation``,
   ``xreid._torch_utils``, ``xreid.data._io``): the module is private to the package, its
   names are its interface.
2. No import cycle between the modules of ``xreid/`` (module-level imports only: an import
   inside a function runs late and is the sanctioned way to load a heavy optional dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xreid"
SCANNED = [PACKAGE, ROOT / "examples", ROOT / "benchmarks"]

# Tests may touch a private name only where they test that very helper. Each entry is
# (test file, private name) with the reason in a comment.
TEST_ALLOWLIST: set[tuple[str, str]] = {
    ("test_public_api.py", "_LAZY"),  # the lazy top-level export table it checks
    ("test_attention.py", "_KeyNormAttention"),  # gradcheck of that autograd function
    ("test_data_synthetic.py", "_BOTTOMS"),  # the renderer's palette it checks
    ("test_data_synthetic.py", "_TOPS"),
    ("test_memory.py", "_momentum_write"),  # the two update kernels against references
    ("test_memory.py", "_select_hard"),
    ("test_metrics_ranking.py", "_DEFAULT_PAIRS_PER_CHUNK"),  # ties across chunk edges
    ("test_metrics_ranking.py", "_PREFIX_FRACTION"),
}

# Private names of other libraries' protocols that xreid sets on purpose.
EXTERNAL_PROTOCOL = {"_ddp_params_and_buffers_to_ignore"}  # torch DDP's ignore list


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(dotted: str, root: Path = ROOT) -> bool:
    """Whether ``dotted`` (e.g. ``xreid.data._io``) names a module or package of the tree."""
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _source_files(roots: list[Path]) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """Absolute module name of a ``from ... import`` (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _private_attributes_by_module(files: list[Path]) -> dict[str, set[str]]:
    """Private names each xreid module defines: functions, classes, methods, attributes set
    on ``self``/``cls`` and module-level assignments."""
    defined: dict[str, set[str]] = {}
    for path in files:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.isidentifier():
                # register_buffer("_name", ...) / setattr(self, "_name", ...)
                names.add(node.value)
        defined[_module_name(path)] = {n for n in names if _is_private(n)}
    return defined


def _attribute_chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None when the root is not a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def private_crossings(path: Path, defined: dict[str, set[str]], root: Path = ROOT
                      ) -> list[str]:
    """Every private name ``path`` takes from another xreid module, as readable lines."""
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(root)
    found: list[str] = []
    module_aliases: dict[str, str] = {}  # local name -> xreid module it is bound to

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "xreid":
                    continue
                if alias.asname:
                    module_aliases[alias.asname] = alias.name
                else:
                    module_aliases["xreid"] = "xreid"
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(node, module, is_package)
            if source.split(".")[0] != "xreid":
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if _is_module(target, root):
                    module_aliases[alias.asname or alias.name] = target
                    continue
                if _is_private(alias.name) and source != module:
                    found.append(f"{rel}:{node.lineno}: imports {alias.name} from {source}")

    own = defined.get(module, set())
    other_private = set().union(*(v for k, v in defined.items() if k != module)) - own
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        chain = _attribute_chain(node)
        if chain is not None and chain[0] in module_aliases:
            # module._name or package.module._name: walk the dotted path
            dotted = module_aliases[chain[0]]
            for part in chain[1:]:
                if _is_module(f"{dotted}.{part}", root):
                    dotted = f"{dotted}.{part}"
                    continue
                if _is_private(part) and dotted != module:
                    found.append(f"{rel}:{node.lineno}: reads {dotted}.{part}")
                break
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) \
                and owner.func.id == "super":
            continue
        if node.attr in other_private and node.attr not in EXTERNAL_PROTOCOL:
            owners = sorted(k for k, v in defined.items() if node.attr in v and k != module)
            found.append(f"{rel}:{node.lineno}: uses .{node.attr} (private to "
                         f"{', '.join(owners)})")
    return found


FILES = _source_files(SCANNED)
DEFINED = _private_attributes_by_module(_source_files([PACKAGE]))


def test_scanner_sees_the_tree():
    names = {_module_name(p) for p in FILES}
    assert {"xreid", "xreid._validation", "xreid.memory.prototype_memory",
            "examples.train_vvi"} <= names
    assert "_cpcl" in DEFINED["xreid.losses.cpcl"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_crosses_a_module_boundary(path: Path):
    found = private_crossings(path, DEFINED)
    assert not found, "\n".join(found)


def test_tests_touch_private_names_only_where_they_test_them():
    found = []
    for path in _source_files([ROOT / "tests"]):
        if path.name == Path(__file__).name:
            continue
        for line in private_crossings(path, DEFINED):
            name = line.rsplit(" ", 1)[-1].strip(")").rsplit(".", 1)[-1]
            if "imports" in line:
                name = line.split(" imports ", 1)[1].split(" ", 1)[0]
            elif "uses ." in line:
                name = line.split("uses .", 1)[1].split(" ", 1)[0]
            if (path.name, name) not in TEST_ALLOWLIST:
                found.append(line)
    assert not found, "\n".join(found)


# --- the checker itself catches what it must ---------------------------------------------


def _check_snippet(tmp_path: Path, module: str, source: str,
                   defined: dict[str, set[str]] | None = None) -> list[str]:
    """Run the checker on ``source`` placed as ``module`` in a small fake tree."""
    for pkg in ("xreid", "xreid/losses", "xreid/data", "xreid/backbones"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    for mod in ("xreid/losses/cpcl.py", "xreid/_validation.py", "xreid/data/_io.py"):
        (tmp_path / mod).touch()
    fake = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
    fake.write_text(source)
    return private_crossings(fake, defined or {}, tmp_path)


@pytest.mark.parametrize("source", [
    "from xreid.losses.cpcl import _check_integer\n",
    "from .cpcl import _cpcl\n",
    "import xreid.losses.cpcl as c\nc._cpcl(1)\n",
    "from xreid.losses import cpcl\ncpcl._cpcl(1)\n",
    "import xreid\nxreid.losses.cpcl._cpcl(1)\n",
])
def test_checker_flags_private_imports_and_module_attributes(tmp_path, source):
    assert _check_snippet(tmp_path, "xreid.losses.triplet", source)


@pytest.mark.parametrize("source", [
    "from xreid._validation import check_tensor\n",
    "from xreid.data import _io\n_io.relabel\n",
    "from xreid.data._io import relabel\n",
    "import xreid\nxreid.__version__\n",
    "x = object()\nx.__class__\n",
])
def test_checker_allows_private_modules_and_dunders(tmp_path, source):
    assert _check_snippet(tmp_path, "xreid.losses.triplet", source) == []


def test_checker_flags_another_modules_private_method(tmp_path):
    defined = {"xreid.backbones.tiny": {"_from_canonical"}}
    source = "def load(model, state):\n    return model._from_canonical(state)\n"
    assert _check_snippet(tmp_path, "xreid.backbones.weights", source, defined)
    # the owner may call it on another instance of itself
    own = {"xreid.backbones.weights": {"_from_canonical"}}
    assert _check_snippet(tmp_path, "xreid.backbones.weights", source, own) == []


# --- import cycles -----------------------------------------------------------------------


def _module_level_imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: top level, including inside ``try`` /
    ``if`` / ``with`` blocks, but not in functions, classes or ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            found.extend(i for stmt in child.orelse for i in _module_level_imports(stmt))
        elif isinstance(child, (ast.If, ast.Try, ast.With)):
            found.extend(_module_level_imports(child))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        elif hasattr(ast, "TryStar") and isinstance(child, ast.TryStar):
            found.extend(_module_level_imports(child))
    return found


def _all_runtime_imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, at module level or inside a function (lazy imports), but
    not under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            found.extend(i for stmt in child.orelse for i in _all_runtime_imports(stmt))
        else:
            found.extend(_all_runtime_imports(child))
    return found


def import_graph(root: Path = ROOT, *, lazy: bool = False) -> dict[str, set[str]]:
    """module -> the xreid modules it imports at module level (the deepest module named:
    ``from xreid.layers import attention`` -> ``xreid.layers.attention``,
    ``from xreid.layers import SII`` -> ``xreid.layers``)."""
    graph: dict[str, set[str]] = {}
    for path in _source_files([root / "xreid"]):
        module = _module_name(path, root)
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        collect = _all_runtime_imports if lazy else _module_level_imports
        for node in collect(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                source = _resolve_from(node, module, is_package)
                targets = [f"{source}.{a.name}" if _is_module(f"{source}.{a.name}", root)
                           else source for a in node.names]
            edges.update(t for t in targets if t.split(".")[0] == "xreid" and t != module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    graph = import_graph()
    assert "xreid.layers.attention" in graph["xreid.layers"]  # the graph is not empty
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# Lazy (function-level) imports that point back at their importer, with the reason (none:
# the variants check their keys against the sections, which do not import the config).
LAZY_CYCLE_ALLOWLIST: set[tuple[str, str]] = set()


def test_no_lazy_import_points_back():
    """A function-level import does not break an import at load time, but it still makes two
    modules depend on each other (the memory and ``xreid.distributed`` did)."""
    graph = import_graph(lazy=True)
    for a, b in LAZY_CYCLE_ALLOWLIST:
        graph[a].discard(b)
    assert "xreid.memory.prototype_memory" in graph["xreid.memory.distributed"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle (lazy imports included): " + " -> ".join(cycle)


def test_cycle_finder():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_module_level_imports_only(tmp_path):
    (tmp_path / "xreid").mkdir()
    (tmp_path / "xreid" / "__init__.py").write_text("")
    (tmp_path / "xreid" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nimport xreid.b\n"
        "if TYPE_CHECKING:\n    from xreid.c import C\n"
        "def f():\n    from xreid.c import g\n")
    (tmp_path / "xreid" / "b.py").write_text("try:\n    from . import a\nexcept ImportError:\n"
                                             "    pass\n")
    (tmp_path / "xreid" / "c.py").write_text("from xreid.a import x\n")
    graph = import_graph(tmp_path)
    assert graph["xreid.a"] == {"xreid.b"} and graph["xreid.b"] == {"xreid.a"}
    assert find_cycle(graph) == ["xreid.a", "xreid.b", "xreid.a"]
    lazy = import_graph(tmp_path, lazy=True)
    assert lazy["xreid.a"] == {"xreid.b", "xreid.c"}  # the function's, not TYPE_CHECKING's


# --- one home per helper -----------------------------------------------------------------

# The same top-level name may stand in two modules only when each is the entry point of its
# own command.
SAME_NAME_ALLOWED = {"main"}


def test_no_top_level_function_or_class_is_defined_twice():
    homes: dict[str, list[str]] = {}
    for path in _source_files([PACKAGE]):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                homes.setdefault(node.name, []).append(_module_name(path))
    twice = {name: mods for name, mods in homes.items()
             if len(mods) > 1 and name not in SAME_NAME_ALLOWED}
    assert not twice, twice
