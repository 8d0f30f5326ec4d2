"""The rules ARCHITECTURE.md states about imports, checked over the source."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top, inside functions or for type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_edge_and_central_share_only_the_wire() -> None:
    crossings = [
        (str(path.relative_to(ROOT)), module)
        for package, other in (("locker_node", "central"), ("central", "locker_node"))
        for path in sources(package)
        for module in imported_modules(path)
        if module.split(".")[0] == other
    ]
    assert crossings == []


def test_the_kiosk_reaches_the_store_only_through_the_flows() -> None:
    reaching = [
        (str(path.relative_to(ROOT)), module)
        for path in sources("locker_node/kiosk")
        for module in imported_modules(path)
        if module.startswith(("sqlalchemy", "locker_node.store"))
    ]
    assert reaching == []


def test_the_nodes_domain_imports_no_io() -> None:
    io = ("sqlalchemy", "httpx", "serial", "gpiozero", "fastapi", "locker_node.store")
    found = [
        (str(path.relative_to(ROOT)), module)
        for path in sources("locker_node/domain")
        for module in imported_modules(path)
        if module.startswith(io)
    ]
    assert found == []


def area_graph() -> dict[str, set[str]]:
    central = ROOT / "central"
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sources("central"):
        area = path.relative_to(central).parts[0].removesuffix(".py")
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "central" and len(parts) > 1 and parts[1] != area:
                target = parts[1]
                if (central / target).is_dir() or (central / f"{target}.py").is_file():
                    edges[area].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one area (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(area: str) -> None:
        index[area] = low[area] = len(index)
        stack.append(area)
        for target in sorted(edges.get(area, ())):
            if target not in index:
                visit(target)
                low[area] = min(low[area], low[target])
            elif target in stack:
                low[area] = min(low[area], index[target])
        if low[area] == index[area]:
            group: list[str] = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == area:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for area in sorted(edges):
        if area not in index:
            visit(area)
    return found


def test_no_import_cycle_between_centrals_areas() -> None:
    edges = area_graph()

    assert "reservations" in edges["nodes"]  # the graph is read at all
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
