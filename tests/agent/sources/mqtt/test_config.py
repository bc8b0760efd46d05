"""The `type = "mqtt"` table: rule errors named by key, source problems with their path, broker
URLs."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from agent.sources.mqtt.config import (
    MqttSourceConfig,
    mqtt_config_problems,
    parse_broker_url,
    resolve_mqtt_paths,
)
from agent.sources.mqtt.mapping import (
    MqttRule,
    RuleError,
    compile_rule,
)
from agent.sources.mqtt.presets import PRESETS

# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"values": [{"metric": "v"}]}, "topic", "missing"),
        ({"topic": "a/b"}, "values", "no values"),
        ({"preset": "tasmoto"}, "preset", "unknown preset 'tasmoto'"),
        ({"topic": "a/#/b", "values": [{"metric": "v"}]}, "topic", "last level"),
        ({"topic": "a/b+", "values": [{"metric": "v"}]}, "topic", "whole level"),
        ({"topic": "a/{x}/{x}", "values": [{"metric": "v"}]}, "topic", "twice"),
        ({"topic": "a/{1x}", "values": [{"metric": "v"}]}, "topic", "a name"),
        ({"topic": "a/{x", "values": [{"metric": "v"}]}, "topic", "unbalanced"),
        ({"topic": "a/{x}", "values": [{"metric": "{y}.v"}]}, "values[0].metric", "{y}"),
        (
            {"topic": "a", "values": [{"metric": "v{key}", "path": "a"}]},
            "values[0].metric",
            "{key}",
        ),
        (
            {"topic": "a", "values": [{"metric": "v", "path": "a..b"}]},
            "values[0].path",
            "empty key",
        ),
        (
            {"topic": "a", "values": [{"metric": "v", "path": "a[x]"}]},
            "values[0].path",
            "bad index",
        ),
        ({"topic": "a", "values": [{"metric": "v", "path": "*.*"}]}, "values[0].path", "one `*`"),
        ({"topic": "a", "area": "{nope}", "values": [{"metric": "v"}]}, "area", "{nope}"),
        (
            {"topic": "a", "timestamp_path": "*", "values": [{"metric": "v"}]},
            "timestamp_path",
            "wildcard",
        ),
    ],
)
def test_rule_errors_name_the_key(rule, field, words):
    with pytest.raises(RuleError) as info:
        compile_rule(msgspec.convert(rule, MqttRule), PRESETS)
    assert info.value.field == field
    assert words in str(info.value)


def test_source_config_problems_are_reported_with_their_path(tmp_path):
    cfg = msgspec.convert(
        {
            "type": "mqtt",
            "url": "mqtt://user:secret@broker:1883",
            "password_file": "pw",
            "ca_file": "ca.pem",
            "cert_file": "c.pem",
            "client_id": "has space",
            "rules": [{"preset": "tasmota"}, {"topic": "a/#/b", "values": [{"metric": "v"}]}],
        },
        MqttSourceConfig,
    )
    assert mqtt_config_problems(cfg, "sources[1]") == [
        "sources[1].url: must not carry credentials: use username and password_file",
        "sources[1].cert_file: cert_file and key_file go together",
        "sources[1].password_file: needs a username",
        "sources[1].client_id: printable ASCII without spaces, please",
        "sources[1].rules[1].topic: `#` must be the last level",
    ]
    resolved = resolve_mqtt_paths(cfg, Path("/etc/edge-agent"))
    assert resolved.password_file == "/etc/edge-agent/pw"
    assert resolved.ca_file == "/etc/edge-agent/ca.pem"
    with pytest.raises(msgspec.ValidationError, match="colour"):
        msgspec.convert({"type": "mqtt", "rules": [], "colour": 1}, MqttSourceConfig)
    empty = msgspec.convert({"type": "mqtt", "rules": []}, MqttSourceConfig)
    assert mqtt_config_problems(empty, "s") == ["s.rules: at least one rule (or preset) is needed"]
    slow = msgspec.convert(
        {"type": "mqtt", "rules": [{"preset": "tasmota"}], "reconnect_initial_ms": 60_000},
        MqttSourceConfig,
    )
    assert mqtt_config_problems(slow, "s") == [
        "s.reconnect_initial_ms: 60000 ms is more than reconnect_max_s (30 s)"
    ]


def test_broker_urls():
    assert parse_broker_url("mqtt://127.0.0.1").port == 1883
    assert parse_broker_url("mqtts://broker.plant").port == 8883
    assert parse_broker_url("mqtts://broker.plant:9000").tls
    for bad in ("http://x", "mqtt://", "mqtt://h/path", "mqtt://h:99999"):
        with pytest.raises(ValueError, match=r"."):
            parse_broker_url(bad)
