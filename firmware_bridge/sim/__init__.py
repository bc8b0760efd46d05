"""The device side of our protocols, for tests, benchmarks and the demo; never used by the agent.

`emulator` is our MCU firmware (its flash log, its half of the protocol, a CLI:
`tierless-mcu-emulator`); `simulators` are a Modbus RTU bus of meters and a weighbridge printing
tickets; `scales` are scales in the MT-SICS, Toledo continuous and A&D formats. All speak through
`firmware_bridge.port`'s pseudo-terminals.
"""
