"""The layering rule: agent and cloud meet only in wire; wire imports none of the others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wire", "agent", "cloud", "firmware_bridge", "provisioning")
FORBIDDEN: dict[str, set[str]] = {
    "wire": {"agent", "cloud", "firmware_bridge", "provisioning"},
    "firmware_bridge": {"agent", "cloud", "provisioning"},
    "agent": {"cloud", "provisioning"},
    "cloud": {"agent", "firmware_bridge", "provisioning"},
    "provisioning": {"agent", "cloud", "firmware_bridge"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def violations(package: str) -> list[str]:
    found: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_levels(path) & FORBIDDEN[package]
        found.extend(f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_respects_layering(package: str) -> None:
    assert violations(package) == []


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import cloud.app\nfrom agent import buffer\n", encoding="utf-8")
    assert imported_top_levels(bad) == {"cloud", "agent"}
