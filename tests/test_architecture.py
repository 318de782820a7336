"""The house rules: front ends above the operation specs and the remote engine, engine and document below
and independent, nothing imports in a cycle, only the studio imports Qt, importing the backend does not import
torch (nor the remote package Ray)."""
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {p.parent.name for p in ROOT.glob("*/__init__.py")}

PROBE = r"""
import importlib, pkgutil, sys
for package in ("canvas", "backend", "operations", "remote", "cli"):
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        importlib.import_module(info.name)
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "PySide2", "studio"))
print("QT:" + ",".join(qt))
"""


def test_only_the_studio_imports_qt():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "QT:", done.stdout


def test_import_linter_contracts_hold():
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_contracts_name_every_package_and_the_layers():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert OURS == {"backend", "canvas", "operations", "remote", "cli", "studio", "krita_plugin"}, \
        "a new package needs its place in the layers"
    assert set(config["root_packages"]) == OURS
    assert config["exclude_type_checking_imports"] is True
    kinds = {c["type"]: c for c in config["contracts"]}
    assert kinds["layers"]["layers"] == ["studio | cli | krita_plugin", "operations | remote", "backend | canvas"]
    independent = [set(c["modules"]) for c in config["contracts"] if c["type"] == "independence"]
    assert {"backend", "canvas"} in independent and {"studio", "cli", "krita_plugin"} in independent
    assert set(kinds["acyclic_siblings"]["ancestors"]) == OURS


def test_no_module_imports_itself_through_others():
    """Module by module (imports inside functions count): no cycle at all, not just between siblings."""
    import grimp

    graph = grimp.build_graph(*sorted(OURS), exclude_type_checking_imports=True)
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module):  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in graph.modules:
                continue
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_importing_the_backend_and_the_specs_is_light():
    code = ("import sys, backend, operations, remote, remote.server, remote.serve, cli.generate, cli.serve; "
            "print('torch' in sys.modules, 'diffusers' in sys.modules, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False", "False"], done.stdout + done.stderr


def test_opening_a_missing_file_says_so():
    done = subprocess.run([sys.executable, "main.py", "no-such-painting.ora"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_test_files_have_unique_names():
    """pytest imports test files by their base name (no packages under tests/): two files of one name in
    different folders stop the whole run at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
