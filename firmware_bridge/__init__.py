"""Serial protocols for the gateway: Modbus meters, ASCII instruments and our own MCU firmware.

The protocol library only; the run loops that read devices live in `agent.sources`.
- Codecs, sans-I/O (bytes and values in, events and values out): `framing`, `mcu_frames`,
  `mcu_connection` (our MCU protocol), `modbus_map` (register decoding), `ascii_protocol`
  (instrument answers and presets), `toledo` (Mettler Toledo continuous output frames),
  `tickets` (weighbridge tickets from a scale's weights); `mcu_vectors` renders the byte vectors
  of docs/firmware-protocol.md.
- Configuration structs, no I/O: `port_config`, `mcu_config`, `modbus_config` (with the register
  maps of real meters in `profiles/`) and `ascii_protocol.AsciiConfig`.
- Port handling: `port` (the only module that opens a tty) and `backoff`.
- `sim/`: the device side (the MCU firmware emulator, simulated meters, a weighbridge and scales).
This package imports only `wire` and third-party libraries.
"""
