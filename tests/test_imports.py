"""Import hygiene of the project's own modules, read from their source (no imports run):
no import cycles (lazy, function-level imports included), no private names imported across
modules, and the atomic write written once."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("teacher", "students", "sweep", "results")


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
            for pkg in PACKAGES for p in (REPO / pkg).glob("*.py")}


def _imports(path: Path, mods: dict) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [a.name for a in node.names]
            for n in names:   # `from sweep import driver` imports the module sweep.driver
                if f"{node.module}.{n}" in mods:
                    out.append((f"{node.module}.{n}", []))
            out.append((node.module, [n for n in names if f"{node.module}.{n}" not in mods]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return [(m, n) for m, n in out if m in mods]


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {t for t, _ in _imports(p, mods) if t != m} for m, p in mods.items()}
    # A package's __init__ is not a dependency of its own modules' code.
    graph = {m: {t for t in ts if not (t in PACKAGES and m.startswith(t + "."))} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_private_names_imported_across_modules():
    mods = _modules()
    bad = [f"{m} imports {t}.{n}" for m, p in mods.items() for t, names in _imports(p, mods)
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert bad == []


def test_atomic_write_is_written_once():
    hits = [str(p.relative_to(REPO)) for p in _modules().values() if "os.replace(tmp" in p.read_text()]
    assert hits == ["results/files.py"]
