"""The MQTT source: sensors on the gateway's broker, acknowledged only once committed.

`source` (the run loop, the only module that imports aiomqtt), `config` (the `type = "mqtt"`
table and its checks; imported by `agent.config`, so it does no I/O at import), `mapping` (topics
and payloads to readings, pure), `presets` (payload shapes of common devices) and `seen` (the
record of what was committed, for exactly-once across redelivery). See docs/mqtt.md.
"""
