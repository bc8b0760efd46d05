"""Config: every problem reported at once, with file, key path and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import SyntheticSourceConfig, load_config, parse_config, parse_listen
from agent.errors import ConfigError

GOOD = """
[device]
id = "gw-0001"
key_file = "keys/device.key"

[cloud]
url = "https://ingest.example.com"

[buffer]
path = "buffer.db"

[[sources]]
type = "test"
rate_hz = 5
series = 3
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, name="agent.toml", base_dir=Path("/etc/edge-agent"))
    return list(info.value.problems)


def test_good_config_resolves_relative_paths():
    config = parse_config(GOOD, name="agent.toml", base_dir=Path("/etc/edge-agent"))
    assert config.device.key_file == "/etc/edge-agent/keys/device.key"
    assert config.buffer.path == "/etc/edge-agent/buffer.db"
    source = config.sources[0]
    assert isinstance(source, SyntheticSourceConfig)
    assert source.rate_hz == 5.0
    assert source.series == 3
    assert config.clock.sync_check == "auto"


def test_every_error_is_reported_at_once_with_path_and_reason():
    text = """
[device]
id = "gw-1"
key_file = "k"
colour = "blue"

[cloud]
url = "http://10.1.2.3:8000"
timeout_s = -1
batch_max_readings = 0

[buffer]
path = "b.db"
max_mb = "lots"

[[sources]]
type = "test"

[[sources]]
type = "test"
name = "second"
rate_hz = -1
series = 0

[[sources]]
type = "serial"

[clock]
sync_check = "sundial"
"""
    assert problems(text) == [
        "agent.toml: device.colour: unknown key",
        "agent.toml: cloud.timeout_s: expected a number > 0, got -1",
        "agent.toml: cloud.batch_max_readings: expected an integer >= 1, got 0",
        'agent.toml: buffer.max_mb: expected a number, got "lots"',
        "agent.toml: sources[1].rate_hz: expected a number > 0, got -1",
        "agent.toml: sources[1].series: expected an integer >= 1, got 0",
        'agent.toml: sources[2].type: expected one of "ascii", "mcu", "modbus", "mqtt", "opcua", '
        '"test", got "serial"',
        'agent.toml: clock.sync_check: expected one of "auto", "timesyncd", "adjtimex", '
        '"assume_synced", "receiver_only", got "sundial"',
    ]


def test_semantic_problems_are_reported_alongside_type_errors():
    text = (
        GOOD.replace("https://ingest.example.com", "http://10.1.2.3") + "\n[metrics]\nlisten = 5\n"
    )
    found = problems(text)
    assert "agent.toml: metrics.listen: expected a string, got 5" in found
    assert any(
        p.startswith("agent.toml: cloud.url: plain http to '10.1.2.3' is refused") for p in found
    )


def test_missing_sections_and_keys():
    assert problems('[device]\nid = "x"\n') == [
        "agent.toml: device.key_file: missing (required)",
        "agent.toml: cloud: missing (required)",
        "agent.toml: buffer: missing (required)",
    ]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("https://10.1.2.3", True),
        ("http://10.1.2.3", False),
        ("ftp://example.com", False),
        ("https://user:pw@example.com", False),
        ("https://example.com/?q=1", False),
    ],
)
def test_plain_http_only_to_loopback(url, allowed):
    text = GOOD.replace("https://ingest.example.com", url)
    if allowed:
        parse_config(text, name="agent.toml", base_dir=Path("/"))
    else:
        assert problems(text)[0].startswith("agent.toml: cloud.url: ")


def test_insecure_http_can_be_allowed_explicitly():
    text = GOOD.replace(
        'url = "https://ingest.example.com"', 'url = "http://10.1.2.3"\nallow_insecure_http = true'
    )
    assert parse_config(text, name="a", base_dir=Path("/")).cloud.allow_insecure_http


def test_duplicate_source_names_and_non_loopback_metrics():
    text = GOOD + '\n[[sources]]\ntype = "test"\n\n[metrics]\nlisten = "0.0.0.0:9108"\n'
    found = problems(text)
    assert "agent.toml: sources[1].name: 'test' is already used by sources[0]" in found
    assert any(
        p.startswith("agent.toml: metrics.listen: '0.0.0.0' is not a loopback") for p in found
    )


def test_not_toml_and_unreadable(tmp_path):
    assert problems("[device\n")[0].startswith("agent.toml: not valid TOML: ")
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read: No such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# \xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_frozen():
    config = parse_config(GOOD, name="a", base_dir=Path("/"))
    with pytest.raises(AttributeError):
        config.device.id = "other"  # type: ignore[misc]


def test_listen_parsing():
    assert parse_listen("127.0.0.1:9108").port == 9108
    assert parse_listen("[::1]:1").host == "::1"
    for bad in ("9108", "host:99999", ":1"):
        with pytest.raises(ValueError, match="expected|out of range"):
            parse_listen(bad)


SERIAL = """
[[sources]]
type = "modbus"
name = "main-bus"
port = { path = "/dev/serial/by-id/usb-FTDI-if00-port0", baudrate = 9600 }

[[sources.devices]]
name = "incomer"
unit_id = 1
profile = "eastron-sdm630"
include = ["power_total"]

[[sources.devices]]
name = "boiler"
unit_id = 12
profile = "meters/boiler.toml"

[[sources]]
type = "ascii"
name = "balance"
port = { path = "tty/balance" }
preset = "mt-sics"

[[sources]]
type = "mcu"
name = "press-3"
port = { path = "/dev/serial/by-id/usb-Tierless-0042" }
channels = { "0" = { metric = "line_pressure", unit = "bar" } }
"""


def test_serial_sources_parse_into_the_bridges_structs(tmp_path):
    from agent.config import AsciiSourceConfig, McuSourceConfig, ModbusSourceConfig
    from firmware_bridge.ascii_protocol import AsciiConfig
    from firmware_bridge.mcu_config import McuConfig
    from firmware_bridge.modbus_config import ModbusConfig

    (tmp_path / "meters").mkdir()
    profile = Path(__file__).resolve().parents[2] / "firmware_bridge/profiles/tuf2000.toml"
    (tmp_path / "meters" / "boiler.toml").write_text(profile.read_text())
    config = parse_config(GOOD + SERIAL, name="agent.toml", base_dir=tmp_path)
    modbus, ascii_, mcu = config.sources[1:]
    # the bridge's own structs, with the agent's `type` tag on top
    assert isinstance(modbus, ModbusSourceConfig)
    assert isinstance(modbus, ModbusConfig)
    assert isinstance(ascii_, AsciiSourceConfig)
    assert isinstance(ascii_, AsciiConfig)
    assert isinstance(mcu, McuSourceConfig)
    assert isinstance(mcu, McuConfig)
    assert modbus.devices[1].profile == str(tmp_path / "meters" / "boiler.toml")  # resolved
    assert modbus.devices[0].profile == "eastron-sdm630"  # a shipped profile, by name
    assert ascii_.port.path == str(tmp_path / "tty" / "balance")
    assert mcu.channels["0"].unit == "bar"


def test_every_serial_problem_has_its_key_path():
    text = GOOD + (
        SERIAL.replace(
            'include = ["power_total"]',
            'include = ["power_total"]\npoints = [{ metric = "v", address = 0, type = "f16" }]',
        )
        .replace('preset = "mt-sics"', 'command = "SI"\npattern = "(?P<w>\\\\d+"')
        .replace('port = { path = "/dev/serial/by-id/usb-Tierless-0042" }\n', "")
    )
    found = problems(text)
    assert found[:3] == [
        'agent.toml: sources[1].devices[0].points[0].type: expected one of "u16", "i16", "u32", '
        '"i32", "float32", "float64", got "f16"',
        "agent.toml: sources[3].port: missing (required)",
        "agent.toml: sources[2].pattern: not a valid regular expression: missing ), "
        "unterminated subpattern at position 0",
    ]
    assert found[3].startswith("agent.toml: sources[2].values: neither values nor an event")
    assert len(found) == 4


def test_serial_meaning_problems_name_the_key():
    text = GOOD + (
        SERIAL.replace(
            'port = { path = "/dev/serial/by-id/usb-FTDI-if00-port0", baudrate = 9600 }\n', ""
        )
        .replace('"eastron-sdm630"', '"nowhere.toml"')
        .replace(
            'profile = "meters/boiler.toml"',
            'points = [{ metric = "f", address = 65535, type = "u32" }]',
        )
        .replace('path = "tty/balance"', 'path = "/dev/serial/by-id/usb-Tierless-0042"')
        .replace('values = [{ group = "w"', "")
        .replace('preset = "mt-sics"', 'preset = "mt-sics"\nstatus_group = "flag"')
        .replace('"0" = { metric', '"zero" = { metric')
    )
    found = problems(text)
    assert found[1].startswith(
        "agent.toml: sources[1].devices[0].profile: profile '/etc/edge-agent/nowhere.toml': "
        "cannot read: "
    )
    del found[1]
    assert found == [
        "agent.toml: sources[1].port: missing (transport rtu needs `port`)",
        "agent.toml: sources[1].devices[1].points[0].address: f runs past register 65535",
        "agent.toml: sources[2].status_group: pattern has no group named 'flag'",
        "agent.toml: sources[3].port.path: '/dev/serial/by-id/usb-Tierless-0042' is already "
        "used by sources[2] (one source per serial port)",
        "agent.toml: sources[3].channels.zero: expected a channel number 0..65535 "
        '(a key like "0"), got "zero"',
    ]


def test_loading_the_schema_imports_no_io_library():
    """`import agent.config` (what edgectl and check-config do) stays light: the source config
    structs live in modules that do no I/O, so neither the buffer's nor the sources' libraries
    are loaded. Run in a fresh interpreter, since this one has imported everything already."""
    io_libraries = {"sqlite3", "_sqlite3", "serial", "pymodbus", "aiomqtt", "paho", "httpx"}
    code = (
        "import agent.config, sys; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(io_libraries)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_a_ticket_on_an_ascii_source_is_checked_with_the_config():
    text = GOOD + (
        '\n[[sources]]\ntype = "ascii"\nname = "bridge"\npreset = "and"\nmode = "streaming"\n'
        'port = { path = "/dev/ttyUSB7" }\n'
        'ticket = { threshold = 500, weight = "mass", material_group = "code" }\n'
    )
    assert problems(text) == [
        "agent.toml: sources[1].ticket.weight: no value has the metric 'mass'",
        "agent.toml: sources[1].ticket.material_group: pattern has no group 'code'",
    ]
