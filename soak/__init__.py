"""The chaos soak (`make soak`, `python -m soak`): the demo's plant under faults, with a ledger.

The demo's receiver, gateway, emulated devices and MQTT broker run as in `make demo`; on top,
`soak.schedule` plans faults (kill -9 of the agent and of the receiver, receiver outages, broker
restarts), `soak.proxy` damages the gateway's HTTP traffic, and `soak.noise` damages the MCU's
serial line. At the end the demo's ledger compares, device by device, what was produced with
what the receiver stored (`soak.run`).
"""
