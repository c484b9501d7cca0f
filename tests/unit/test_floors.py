"""The floors of the house: no folder imports a folder above it, no stage another stage.

docs/DECISIONS.md ("The house") draws the same floors. Each folder stands on
those below it and never knows the ones above exist (httpcore under httpx):

==========  =====  ========================================================
floor       folder what it is
==========  =====  ========================================================
0           schemas/  wire formats and contracts; pure
1           infra/    shared plumbing: settings, Kafka helpers, tasks, ...
2           store/    the metric store, its migrations, reader, SQL policy
3           agents/, streams/, gateway/  the stages, side by side
4           vmpulse/  the application: CLI, ``vmpulse up``, tools
==========  =====  ========================================================

An import counts wherever it is written: at the top of a module, inside a
function (lazy) or under ``TYPE_CHECKING``. Stages share through the floors
below them, never with each other, and nobody imports a ``_private`` name or
module of another folder. tests/ stands above everything and is not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FLOORS: dict[str, int] = {
    "schemas": 0,
    "infra": 1,
    "store": 2,
    "agents": 3,
    "streams": 3,
    "gateway": 3,
    "vmpulse": 4,
}
"""Each folder's floor; a folder imports only folders on lower floors (and itself)."""


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every absolute import in a file."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
    return found


def violations(root: Path = ROOT) -> list[str]:
    """Every import that climbs a floor, crosses to another stage or takes a private name."""
    found: list[str] = []
    for folder, floor in FLOORS.items():
        for path in sorted((root / folder).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            where = path.relative_to(root)
            for line, module, names in _imports(path):
                top = module.split(".")[0]
                if top not in FLOORS or top == folder:
                    continue
                if FLOORS[top] > floor:
                    found.append(f"{where}:{line} imports {module}, a floor above {folder}/")
                elif FLOORS[top] == floor:
                    found.append(f"{where}:{line} imports {module}, another stage's module")
                private = [p for p in module.split(".")[1:] if p.startswith("_")]
                private += [n for n in names if n.startswith("_")]
                if private:
                    found.append(f"{where}:{line} imports {module} {private}: private to {top}/")
    return found


def test_no_folder_imports_a_folder_above_it_or_another_stage() -> None:
    found = violations()
    assert not found, "imports that break the floors:\n  " + "\n  ".join(found)


def test_every_package_has_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(FLOORS), "a new top-level package needs its floor in FLOORS"


@pytest.mark.parametrize(
    ("folder", "source", "expected"),
    [
        ("schemas", "from infra.config import Settings\n", "a floor above schemas/"),
        ("infra", "def f() -> None:\n    import gateway.service\n", "a floor above infra/"),
        ("streams", "from gateway.rooms import parse_vm_id\n", "another stage's module"),
        ("gateway", "from store.reader import _rows\n", "private to store/"),
    ],
)
def test_the_check_sees_each_kind_of_breach(
    tmp_path: Path, folder: str, source: str, expected: str
) -> None:
    for name in FLOORS:
        (tmp_path / name).mkdir()
    (tmp_path / folder / "bad.py").write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found
