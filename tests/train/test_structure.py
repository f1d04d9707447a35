"""The training package's structure: no import cycle, no function-level import of the library (the
way a cycle hides), and no branch on a family's name outside the family modules (generic code asks
`families.get`). A third-party import may be deferred into the function that needs it."""
import ast
import os

TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "outeffhop_jax", "train")
# The modules that define families (and the registry listing them) may name one.
FAMILY_MODULES = {"families", "text", "vision", "forecasting"}


def _modules():
  out = {}
  for name in sorted(os.listdir(TRAIN)):
    if name.endswith(".py"):
      with open(os.path.join(TRAIN, name)) as f:
        out[name[:-3]] = ast.parse(f.read(), name)
  return out


def _train_imports(tree, names):
  """The train/ modules a module imports (from outeffhop_jax.train import x / .x import y)."""
  deps = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "outeffhop_jax.train":
        deps |= {a.name for a in node.names if a.name in names}
      elif node.module.startswith("outeffhop_jax.train."):
        deps.add(node.module.split(".")[2])
  return deps


def test_no_import_cycle_and_no_function_level_import():
  modules = _modules()
  graph = {m: _train_imports(t, modules) - {m} for m, t in modules.items() if m != "__init__"}
  state = {}

  def visit(m, path):
    state[m] = "open"
    for d in sorted(graph.get(m, ())):
      assert state.get(d) != "open", f"import cycle: {' -> '.join(path + [m, d])}"
      if d not in state:
        visit(d, path + [m])
    state[m] = "done"

  for m in graph:
    if m not in state:
      visit(m, [])
  for m, tree in modules.items():
    for fn in ast.walk(tree):
      if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        inner = [n for n in ast.walk(fn) if _imports_the_library(n)]
        assert not inner, f"train/{m}.py: import inside {fn.name}() (line {inner[0].lineno})"


def _imports_the_library(node) -> bool:
  if isinstance(node, ast.ImportFrom):
    return node.level > 0 or (node.module or "").split(".")[0] == "outeffhop_jax"
  if isinstance(node, ast.Import):
    return any(a.name.split(".")[0] == "outeffhop_jax" for a in node.names)
  return False


def test_generic_code_never_compares_a_family_name():
  for m, tree in _modules().items():
    if m in FAMILY_MODULES:
      continue
    for node in ast.walk(tree):
      if isinstance(node, ast.Compare):
        names = [n for n in [node.left, *node.comparators]
                 if isinstance(n, ast.Attribute) and n.attr == "family"]
        assert not names, f"train/{m}.py line {node.lineno}: branches on a family name"
