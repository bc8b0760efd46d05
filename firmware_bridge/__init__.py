"""Serial protocols for the gateway: Modbus meters, ASCII instruments and our own MCU firmware.

Each kind of device is one *source* class with `async run(emit)` (see `firmware_bridge.source`):
`ModbusSource` (modbus_source), `AsciiSource` (ascii_source) and `McuSource` (mcu_source).
The protocol logic we own is sans-I/O (`framing`, `mcu_frames`, `mcu_connection`, `modbus_map`,
`ascii_protocol`); the only module that opens ttys is `port`; Modbus I/O goes through pymodbus.
`emulator` speaks our MCU protocol from the device side (tests, demo); `watermarks` keeps the
MCU positions committed; `modbus_config` and `profiles/` hold register maps of real meters.
This package imports only `wire` and third-party libraries.
"""
