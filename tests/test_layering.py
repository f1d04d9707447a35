"""The package's import graph: no cycle between modules, no import running up the layers.

Every module of outeffhop_jax is parsed with `ast` (no import is executed), every import statement
counted, including those inside functions. Layers (docs/DESIGN.md, "Layers"), A <- B meaning
B may import A:

    kernels <- ops <- nn <- models <- {train, analysis, viz}
    data    <- models, train, analysis, viz   (a leaf: data imports no other subpackage; models
                                               reads the packaged checkpoint's tokenizer from it)
    train   <- analysis                       (never the other way round)

`from a.b import c` is an edge to module a.b.c when that is a module, else to a.b; the parent
packages Python initialises on the way are not edges (they are not what the code asked for).
"""
from __future__ import annotations

import ast
import functools
import pathlib

import pytest

PACKAGE = "outeffhop_jax"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE
# The subpackages each one may import (besides itself); the package root may import anything.
MAY_IMPORT = {
    "kernels": set(),
    "ops": {"kernels"},
    "nn": {"kernels", "ops"},
    "models": {"kernels", "ops", "nn", "data"},
    "data": set(),
    "train": {"kernels", "ops", "nn", "models", "data"},
    "analysis": {"kernels", "ops", "nn", "models", "data", "train"},
    "viz": {"kernels", "ops", "nn", "models", "data"},
}


def _module_name(path: pathlib.Path) -> str:
  parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
  """Project modules `name` imports anywhere in its file (module level or in functions)."""
  is_package = path.name == "__init__.py"
  out = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from the importing module's package
        pkg = name.split(".") if is_package else name.split(".")[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
      targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    else:
      continue
    for t in targets:
      while t and t not in modules:  # `import a.b.c` of a non-module attribute: nearest module
        t = t.rpartition(".")[0]
      if t.startswith(PACKAGE) and t != name:
        out.add(t)
  return out


@functools.lru_cache(maxsize=1)
def _graph() -> dict[str, frozenset[str]]:
  modules = _modules()
  return {n: frozenset(_imports(n, p, modules)) for n, p in modules.items()}


def _layer(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None  # None: the package root


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan, iterative)."""
  index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
  for start in graph:
    if start in index:
      continue
    work = [(start, iter(sorted(graph[start])))]
    index[start] = low[start] = counter[0]
    counter[0] += 1
    stack.append(start)
    on_stack.add(start)
    while work:
      node, children = work[-1]
      child = next(children, None)
      if child is not None:
        if child not in index:
          index[child] = low[child] = counter[0]
          counter[0] += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(sorted(graph.get(child, ())))))
        elif child in on_stack:
          low[node] = min(low[node], index[child])
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        comp = []
        while True:
          m = stack.pop()
          on_stack.discard(m)
          comp.append(m)
          if m == node:
            break
        if len(comp) > 1:
          out.append(sorted(comp))
  return out


def test_graph_helpers_find_a_cycle_and_resolve_imports():
  """The checker itself on a hand-made graph, and on two edges known to exist."""
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []
  graph = _graph()
  assert "outeffhop_jax.ops.attention" in graph["outeffhop_jax.nn.attention"] or any(
      m.startswith("outeffhop_jax.ops") for m in graph["outeffhop_jax.nn.attention"])
  assert "outeffhop_jax.analysis.outliers.metrics" in graph["outeffhop_jax.analysis.outliers.kinds"] \
      or "outeffhop_jax.analysis.outliers.activation" in graph["outeffhop_jax.analysis.outliers.kinds"]


def test_every_subpackage_has_a_layer():
  layers = {_layer(m) for m in _modules()} - {None}
  assert layers <= set(MAY_IMPORT), sorted(layers - set(MAY_IMPORT))


def test_no_import_runs_up_the_layers():
  bad = []
  for importer, targets in _graph().items():
    src = _layer(importer)
    if src is None:
      continue
    for t in sorted(targets):
      dst = _layer(t)
      if dst != src and dst not in MAY_IMPORT[src]:
        bad.append(f"{importer} imports {t} ({src} may import only {sorted(MAY_IMPORT[src])})")
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_no_import_cycle(layer):
  """No cycle among the modules of one subpackage (cycles across subpackages would need an
  upward import, which the test above rules out)."""
  graph = _graph()
  cycles = [c for c in _cycles(graph) if _layer(c[0]) == layer]
  assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_analysis_libraries_never_import_experiments():
  """outliers/ and quant/ are libraries: they import neither experiments/ nor train."""
  bad = []
  for importer, targets in _graph().items():
    if importer.startswith(("outeffhop_jax.analysis.outliers", "outeffhop_jax.analysis.quant")):
      bad += [f"{importer} imports {t}" for t in sorted(targets)
              if t.startswith(("outeffhop_jax.analysis.experiments", "outeffhop_jax.train"))]
  assert not bad, "\n".join(bad)
