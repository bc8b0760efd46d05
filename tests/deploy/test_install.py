"""The install path of docs/install.md, for real: the wheel and its dependencies from the
wheelhouse (`make wheelhouse`) into fresh virtualenvs with no index, one per role; every
command answers `--help`, and a command of a role not installed says which extra to install.

pip runs with no configuration file (PIP_CONFIG_FILE=/dev/null) and --no-index, so nothing but
the wheelhouse can satisfy a dependency: this is the offline install of a gateway.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.deploy.conftest import DIST, WHEELHOUSE
from tests.deploy.test_unit import RELEASE_FILES
from wire.extras import EXIT_MISSING_EXTRA

COMMANDS = ("edge-agent", "edge-cloud", "edgectl", "tierless-mcu-emulator")
# extras installed -> the commands that work there; the others must name their extra.
ROLES = {
    "agent": {"edge-agent", "edgectl", "tierless-mcu-emulator"},
    "cloud,postgres": {"edge-cloud"},
    "agent,cloud,postgres,provisioning,zstd": set(COMMANDS),
}
EXTRA_OF = {
    "edge-agent": "agent",
    "edge-cloud": "cloud",
    "edgectl": "provisioning",
    "tierless-mcu-emulator": "serial",
}


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]  # kw passes through
        args, capture_output=True, text=True, timeout=300, check=False, **kw
    )


@pytest.fixture
def wheelhouse(deploy_tests) -> Path:
    wheels = sorted(WHEELHOUSE.glob("tierless-*.whl"))
    assert wheels, f"{WHEELHOUSE}: no tierless wheel; run make wheelhouse"
    return WHEELHOUSE


@pytest.mark.parametrize("extras", sorted(ROLES))
def test_offline_install_of_a_role(extras, wheelhouse, tmp_path):
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    # The command of docs/install.md, with this role's extras.
    installed = _run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            f"tierless[{extras}]",
        ],
        env=_offline_env(),
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    for command in COMMANDS:
        done = _run([str(venv / "bin" / command), "--help"], cwd=tmp_path)
        if command in ROLES[extras]:
            assert (done.returncode, done.stderr) == (0, ""), f"{command}: {done.stderr}"
            assert done.stdout.startswith("usage:"), f"{command}: {done.stdout}"
        elif done.returncode == 0:
            # Another role's command whose dependencies this role happens to bring (edgectl
            # needs only httpx, which the cloud has for its webhooks): it must simply work.
            assert done.stderr == "", f"{command}: {done.stderr}"
            assert done.stdout.startswith("usage:"), f"{command}: {done.stdout}"
        else:
            extra = EXTRA_OF[command]
            assert done.returncode == EXIT_MISSING_EXTRA, f"{command}: {done.stderr}"
            assert done.stdout == ""
            lines = done.stderr.splitlines()
            assert len(lines) == 1, done.stderr
            assert lines[0].startswith(f'{command}: the "{extra}" extra is not installed here')
            assert lines[0].endswith(f"pip install 'tierless[{extra}]'")


def test_the_source_release_carries_the_unit_and_the_docs(deploy_tests):
    releases = sorted(DIST.glob("tierless-*.tar.gz"))
    assert releases, f"{DIST}: no source release; run make dist"
    with tarfile.open(releases[-1]) as tar:
        names = {name.partition("/")[2] for name in tar.getnames()}
    missing = [name for name in RELEASE_FILES if name not in names]
    assert not missing, f"{releases[-1].name} lacks {missing}"
