"""The plant file: processes and shifts as configuration, validated once with every problem named
by file and key path; the figures follow it; without it nothing changes."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from cloud.apps import efficiency, plantfile
from cloud.apps.intensity import PlantConfig, ProcessConfig, Shift
from cloud.cli import _parser, main, serve_settings
from cloud.errors import ConfigError
from cloud.storage.store import Store
from tests.cloud.apps import plant as synth
from tests.cloud.conftest import READ_TOKEN, running_receiver
from wire.efficiency import EFFICIENCY_PATH, Efficiency
from wire.production import PRODUCTION_PATH

GOOD = """
timezone = "Europe/Berlin"
night_hours = [1, 4]

[[processes]]
id = "L1"
name = "Line 1"
tags = ["line1"]
materials = ["clinker"]

[[processes]]
id = "line2"
direction = "in"

[[shifts]]
name = "day"
start = "06:00"
length_hours = 12
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        plantfile.parse_plant(text, source="plant.toml")
    return list(info.value.problems)


def test_a_good_file_becomes_the_plant_config() -> None:
    config = plantfile.parse_plant(GOOD.replace('"day"', '"days"'), source="plant.toml")
    assert config.tz == "Europe/Berlin"
    assert config.night == (1, 4)
    assert config.processes == (
        ProcessConfig(
            "L1",
            materials=frozenset({"clinker"}),
            tags=frozenset({"line1"}),
            display="Line 1",
        ),
        ProcessConfig("line2", direction="in"),
    )
    assert config.shifts == (Shift("days", 6, 18),)
    assert config.process_of("line1") == "L1"
    assert config.process_of("L1") == "L1"
    assert config.process_of("line3") is None


def test_an_empty_file_is_the_defaults_and_the_dashboard_zone() -> None:
    config = plantfile.parse_plant("", source="p.toml", default_tz="Europe/Paris")
    assert config == PlantConfig((), tz="Europe/Paris")
    # a 24-hour shift holds every hour; a night shift wraps
    whole = plantfile.parse_plant(
        '[[shifts]]\nname = "all"\nstart = "22:00"\nlength_hours = 24\n', source="p.toml"
    )
    assert whole.shifts == (Shift("all", 22, 22),)
    assert all(whole.shifts[0].holds(h) for h in range(24))


def test_every_problem_is_named_by_file_and_key() -> None:
    assert problems("[[processes]]\nname = 'x'\n") == [
        "plant.toml: processes[0]: Object missing required field `id`"
    ]
    assert problems("colour = 'red'\n") == [
        "plant.toml: file: Object contains unknown field `colour`"
    ]
    assert problems("[[processes]]\nid = 'a'\ndirection = 'up'\n")[0].startswith(
        "plant.toml: processes[0].direction: "
    )
    assert problems("[[shifts]]\nname = 'a'\nstart = '06:00'\nlength_hours = 'eight'\n") == [
        "plant.toml: shifts[0].length_hours: Expected `int`, got `str`"
    ]
    assert problems(GOOD.replace('"06:00"', '"06:30"').replace("12", "25")) == [
        "plant.toml: shifts[0].name: expected a unique name other than 'day'",
        "plant.toml: shifts[0].start: expected HH:00 (on the hour), got '06:30'",
        "plant.toml: shifts[0].length_hours: expected 1..24, got 25",
    ]
    text = GOOD.replace("Europe/Berlin", "Mars/Olympus").replace('"line1"', '"line2"')
    text = text.replace("[1, 4]", "[4, 1]")
    assert problems(text) == [
        "plant.toml: timezone: 'Mars/Olympus' is not an IANA zone (e.g. Europe/Berlin)",
        "plant.toml: night_hours: expected [start, end], local hours, start < end <= 24",
        "plant.toml: processes[1].id: 'line2' already belongs to process 'L1'",
        "plant.toml: shifts[0].name: expected a unique name other than 'day'",
    ]
    assert problems("shifts = []\n") == [
        "plant.toml: shifts: give at least one shift, or leave the key out for the defaults"
    ]
    (bad_toml,) = problems("[[processes]]\nid = \n")
    assert bad_toml.startswith("plant.toml: ")
    assert "line 2" in bad_toml


def test_a_series_tag_of_a_configured_process_counts_for_it() -> None:
    """The synthetic plant tags its series and tickets `line1`; the file calls the process `L1`
    and owns `line1` through its tags: the figures are L1's."""
    plant = synth.generate(21, faults=())
    config = PlantConfig(
        (ProcessConfig("L1", tags=frozenset({"line1"})), ProcessConfig("line2")),
    )
    report = efficiency.analyse(
        plant.series,
        plant.rows,
        plant.events,
        config,
        from_ms=plant.from_ms,
        to_ms=plant.to_ms,
        until_ms=plant.to_ms,
    )
    assert set(report.tonnes) == {"L1", "line2"}
    assert report.tonnes["L1"] > 0
    assert {r.process for r in report.intensity} == {"L1", "line2"}
    assert report.findings == []


def test_serve_reads_the_plant_file_from_the_flag_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plant.toml"
    path.write_text('[[processes]]\nid = "kiln"\n')
    db = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"TIERLESS_TIMEZONE": "Europe/Vienna"}
    settings, _ = serve_settings(
        _parser().parse_args(["serve", "--db", db, "--plant", str(path)]), env
    )
    assert settings.plant == PlantConfig((ProcessConfig("kiln"),), tz="Europe/Vienna")
    settings, _ = serve_settings(
        _parser().parse_args(["serve", "--db", db]), {**env, "TIERLESS_PLANT_FILE": str(path)}
    )
    assert settings.plant is not None
    assert settings.plant.processes[0].name == "kiln"
    settings, _ = serve_settings(_parser().parse_args(["serve", "--db", db]), env)
    assert settings.plant is None

    path.write_text("[[processes]]\nid = 3\n")
    assert main(["serve", "--db", db, "--plant", str(path)], env={}) == 2
    err = capsys.readouterr().err
    assert f"edge-cloud: error: {path}: processes[0].id: Expected `str`, got `int`" in err
    assert "Traceback" not in err
    assert main(["serve", "--db", db, "--plant", str(tmp_path / "none.toml")], env={}) == 2
    assert "none.toml: No such file or directory" in capsys.readouterr().err


async def test_the_api_answers_with_the_configured_plant(store: Store) -> None:
    """Processes, display names and the zone come from the plant; an operator's entry that
    names a process by its tag counts for it; `tz=` still overrides the zone for one request."""
    plant = plantfile.parse_plant(
        'timezone = "Europe/Berlin"\n[[processes]]\nid = "L1"\nname = "Line 1"\ntags = ["line1"]\n',
        source="plant.toml",
    )
    async with running_receiver(store, plant=plant) as receiver:
        day0 = 1_789_948_800_000
        receiver.clock.ms = day0 + 12 * 3_600_000
        entry = {"process": "line1", "from_ms": day0, "to_ms": day0 + 3_600_000}
        r = await receiver.admin(
            "POST", PRODUCTION_PATH, json={**entry, "tonnes": 10.0, "actor": "ana"}
        )
        assert r.status_code == 201, r.text
        read = {"authorization": f"Bearer {READ_TOKEN}"}
        window = {"from_ms": day0, "to_ms": day0 + 12 * 3_600_000}
        r = await receiver.client.get(EFFICIENCY_PATH, params=window, headers=read)
        assert r.status_code == 200, r.text
        body = msgspec.json.decode(r.content, type=Efficiency)
        assert (body.tz, body.processes, body.names) == ("Europe/Berlin", ["L1"], {"L1": "Line 1"})
        assert body.tonnes == {"L1": pytest.approx(10.0)}
        r = await receiver.client.get(EFFICIENCY_PATH, params={**window, "tz": "UTC"}, headers=read)
        assert msgspec.json.decode(r.content, type=Efficiency).tz == "UTC"
