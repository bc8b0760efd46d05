"""The gateway's systemd unit as shipped (issue 14): `Documentation=` names docs that the
documented install puts there, the service can open serial adapters only through the drop-in
that docs/operations.md installs, and the source release carries all of it. Quick checks of the
files; `make install-test` builds the source release and checks its contents."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "edge-agent.service"
SERIAL = ROOT / "deploy" / "edge-agent-serial.conf"
OPERATIONS = ROOT / "docs" / "operations.md"
DOC_DIR = "/usr/share/doc/tierless"
# What the source release must carry for a gateway; tests/deploy/test_install.py checks the
# built tarball against it.
RELEASE_FILES = (
    "deploy/edge-agent.service",
    "deploy/edge-agent-serial.conf",
    "examples/agent.toml",
    "docs/operations.md",
    "docs/configuration.md",
    "LICENSE",
)


def _directives(path: Path) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order, as systemd reads a unit file."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        found.setdefault((section, key.strip()), []).append(value.strip())
    return found


def test_documentation_names_docs_the_install_puts_there():
    unit = _directives(UNIT)
    urls = " ".join(unit[("Unit", "Documentation")]).split()
    assert urls
    for url in urls:
        assert url.startswith(f"file://{DOC_DIR}/"), url
        name = url.removeprefix(f"file://{DOC_DIR}/")
        assert (ROOT / "docs" / name).is_file(), url
    install_docs = f"install -m 0644 docs/*.md {DOC_DIR}/"
    assert OPERATIONS.read_text(encoding="utf-8").count(install_docs) == 2  # gateway and Pi steps


def test_serial_ports_only_through_the_drop_in_and_the_dialout_group():
    unit = _directives(UNIT)
    assert unit[("Service", "SupplementaryGroups")] == ["dialout"]
    assert unit[("Service", "PrivateDevices")] == ["yes"]  # no physical device by default
    assert ("Service", "DeviceAllow") not in unit
    serial = _directives(SERIAL)
    assert set(serial) <= {
        ("Service", "PrivateDevices"),
        ("Service", "DevicePolicy"),
        ("Service", "DeviceAllow"),
    }
    # A private /dev has no serial node for DeviceAllow= to allow: the drop-in must turn it off
    # and close the host's /dev instead.
    assert serial[("Service", "PrivateDevices")] == ["no"]
    assert serial[("Service", "DevicePolicy")] == ["closed"]
    allowed = serial[("Service", "DeviceAllow")]
    # Classes, not paths: a replugged adapter may come back as another ttyUSBn.
    assert all(re.fullmatch(r"char-tty[A-Z]+ rw", entry) for entry in allowed), allowed
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(allowed)
    drop_in = "/etc/systemd/system/edge-agent.service.d/serial.conf"
    text = OPERATIONS.read_text(encoding="utf-8")
    assert text.count(f"install -D -m 0644 deploy/edge-agent-serial.conf {drop_in}") == 2


def test_the_source_release_lists_what_a_gateway_needs():
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    words = set(manifest.split())
    for name in RELEASE_FILES:
        assert (ROOT / name).is_file(), name
        folder = name.partition("/")[0]
        assert name in words or ("graft" in words and folder in words), name
