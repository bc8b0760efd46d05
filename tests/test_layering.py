"""The layering rules, checked on the source text.

- agent and cloud meet only in wire; wire imports none of the others.
- hostio (code about the local machine that several processes share) imports only wire.
- provisioning may read the agent's config and key files through the agent's own modules, and
  nothing else of the agent.
- The platform's apps (`cloud.apps`) only read: of the rest of cloud they may import the read
  interface and the device records of storage, the errors, the bearer-token check and the
  response helpers; never the batch or registry interfaces, a backend, or the receiver. The one
  exception: the alert apps (`ALERT_WRITERS`) may write the alert interface, and no other app;
  the production API (`PRODUCTION_WRITERS`) the production interface.
- No package has an import cycle, not even one hidden in a function body or behind
  `TYPE_CHECKING`: every import in a module counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wire", "hostio", "agent", "cloud", "firmware_bridge", "provisioning")
FORBIDDEN: dict[str, set[str]] = {
    "wire": {"hostio", "agent", "cloud", "firmware_bridge", "provisioning"},
    "hostio": {"agent", "cloud", "firmware_bridge", "provisioning"},
    "firmware_bridge": {"hostio", "agent", "cloud", "provisioning"},
    "agent": {"cloud", "provisioning"},
    "cloud": {"agent", "firmware_bridge", "provisioning"},
    "provisioning": {"cloud", "firmware_bridge"},
}
# The only agent modules provisioning may import: its config and key files, and their errors.
PROVISIONING_MAY_IMPORT = {"agent.config", "agent.keyfile", "agent.errors"}
# The only cloud modules outside cloud.apps that an app may import.
APPS_MAY_IMPORT = {
    "cloud.storage.reads",
    "cloud.storage.devices",
    "cloud.errors",
    "cloud.bearer",
    "cloud.responses",
}

# The apps that may use the alert interface (alerts, acknowledgements, the outbox), the only
# storage an app may write: delivery and the API write, the efficiency page lists alerts.
ALERT_WRITERS = {
    "cloud.apps.alert_delivery",
    "cloud.apps.alert_scheduler",
    "cloud.apps.alerts_api",
    "cloud.apps.efficiency_page",
}
# The one app that writes operators' production entries (it reads them, like every app, through
# the read interface).
PRODUCTION_WRITERS = {"cloud.apps.production_api"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, anywhere in it (`from a import b` gives a.b
    and a, since b may be a module or a name in a)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def imported_top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def violations(package: str) -> list[str]:
    found: list[str] = []
    for name, path in package_modules(package).items():
        imported = imported_modules(path)
        bad = {m.split(".")[0] for m in imported} & FORBIDDEN[package]
        found.extend(f"{name} imports {top}" for top in sorted(bad))
        if package == "provisioning":
            agent = {m for m in imported if m.split(".")[0] == "agent"}
            # `from agent.config import X` yields agent.config.X too: judge by the module part
            stray = {
                m
                for m in agent
                if not any(m == ok or m.startswith(ok + ".") for ok in PROVISIONING_MAY_IMPORT)
                and m != "agent"
            }
            found.extend(f"{name} imports {m}" for m in sorted(stray))
    return found


def app_violations(modules: dict[str, Path]) -> list[str]:
    """Imports of the `cloud.apps` modules among `modules` outside what apps may use."""
    found: list[str] = []
    for name, path in modules.items():
        if not (name == "cloud.apps" or name.startswith("cloud.apps.")):
            continue
        for m in sorted(imported_modules(path)):
            if m.split(".")[0] != "cloud" or m in ("cloud", "cloud.storage"):
                continue
            allowed = {"cloud.apps", *APPS_MAY_IMPORT}
            if name in ALERT_WRITERS:
                allowed.add("cloud.storage.alerts")
            if name in PRODUCTION_WRITERS:
                allowed.add("cloud.storage.production")
            if not any(m == ok or m.startswith(ok + ".") for ok in allowed):
                found.append(f"{name} imports {m}")
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports (a package's __init__ included)."""
    modules = package_modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            # `from a.b import c`: a.b.c if that is a module, else a.b
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
            # Importing a.b.c from outside a.b runs a/b/__init__.py first: an edge to a.b.
            parent = imported.rpartition(".")[0]
            while parent and parent in modules and not name.startswith(parent + "."):
                targets.add(parent)
                parent = parent.rpartition(".")[0]
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """One cycle for each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                yield sorted(component)

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def package_cycles(package: str) -> list[list[str]]:
    return list(cycles(import_graph(package)))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_layering(package: str) -> None:
    assert violations(package) == []


def test_apps_only_read() -> None:
    assert app_violations(package_modules("cloud")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from cloud.storage.registry import RegistryStore\n",
        "from cloud.storage.batches import BatchStore\n",
        "from cloud.storage.store import Store\n",
        "from cloud.storage import sqlite\n",
        "from cloud.receiver.context import Context\n",
        "import cloud.receiver\n",
        "from cloud import app\n",
    ],
)
def test_app_checker_sees_a_write_path(tmp_path: Path, source: str) -> None:
    bad = tmp_path / "m.py"
    bad.write_text(source, encoding="utf-8")
    assert app_violations({"cloud.apps.m": bad}) != []
    assert app_violations({"cloud.receiver.m": bad}) == []  # the rule is the apps' only


def test_app_checker_lets_an_app_read(tmp_path: Path) -> None:
    ok = tmp_path / "m.py"
    ok.write_text(
        "from cloud.storage.reads import ReadStore\nfrom cloud.storage import reads\n"
        "from cloud.apps import figures\nfrom cloud.errors import RowBudgetError\n",
        encoding="utf-8",
    )
    assert app_violations({"cloud.apps.m": ok}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_no_import_cycle(package: str) -> None:
    assert package_cycles(package) == []


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import cloud.app\nfrom agent import buffer\n", encoding="utf-8")
    assert imported_top_levels(bad) == {"cloud", "agent"}


def test_cycle_finder_sees_a_hidden_cycle() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert list(cycles(graph)) == [["p.a", "p.b", "p.c"]]
    assert list(cycles({"p.a": {"p.b"}, "p.b": set()})) == []


def test_only_the_alert_apps_write_and_only_alerts(tmp_path: Path) -> None:
    alerts = tmp_path / "a.py"
    alerts.write_text("from cloud.storage.alerts import AlertStore\n", encoding="utf-8")
    assert app_violations({"cloud.apps.figures": alerts}) != []
    assert app_violations({"cloud.apps.alert_delivery": alerts}) == []
    batches = tmp_path / "b.py"
    batches.write_text("from cloud.storage.batches import BatchStore\n", encoding="utf-8")
    assert app_violations({"cloud.apps.alert_delivery": batches}) != []
