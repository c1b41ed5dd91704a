"""Who may import whom: the box, the station and provisioning stand on a shared floor.

The floor (everything in roadside/ but the entry points) imports none of the three; the
station and provisioning never import the box's code. Every import counts, also the ones
inside functions, so a late import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Package -> folder, as setup.py maps them.
PACKAGES = {
    "roadside": REPO / "roadside",
    "roadside.agent": REPO / "agent",
    "roadside.central": REPO / "central",
    "roadside.provisioning": REPO / "provisioning",
}
SIDES = ("roadside.agent", "roadside.central", "roadside.provisioning")
# Top-level entry points that put the sides together; they stand above the floor.
ENTRY_POINTS = ("roadside.cli", "roadside.demo", "roadside.testing")


def modules(package: str) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module of ``package`` in its own folder."""
    root = PACKAGES[package]
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join((package, *parts))
        yield name, path


def imported(name: str, path: Path) -> set[str]:
    """Every module ``path`` imports anywhere in its body, as absolute dotted names."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def floor() -> Iterator[tuple[str, Path]]:
    for name, path in modules("roadside"):
        if not any(within(name, entry) for entry in ENTRY_POINTS):
            yield name, path


def test_the_walk_sees_every_kind_of_import() -> None:
    """The walk itself: late imports, relative imports and ``from x import y`` all count."""
    broker = dict(modules("roadside.provisioning"))["roadside.provisioning.broker"]
    assert "roadside.provisioning.ca" in imported("roadside.provisioning.broker", broker)
    cli = dict(modules("roadside.central"))["roadside.central.cli"]
    assert "roadside.central.web.cli" in imported("roadside.central.cli", cli)  # in a function
    names = {name for name, _ in floor()}
    assert {"roadside.wire.topics", "roadside.config.agent", "roadside.ids"} <= names
    assert "roadside.cli" not in names and "roadside.demo" not in names


@pytest.mark.parametrize("package", ["roadside.central", "roadside.provisioning"])
def test_station_and_provisioning_do_not_import_the_box(package: str) -> None:
    offenders = {
        name: sorted(m for m in imported(name, path) if within(m, "roadside.agent"))
        for name, path in modules(package)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_shared_floor_imports_no_side() -> None:
    offenders = {
        name: sorted(m for m in imported(name, path) if any(within(m, s) for s in SIDES))
        for name, path in floor()
    }
    assert {name: found for name, found in offenders.items() if found} == {}
