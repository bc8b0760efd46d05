"""The OPC UA source: PLC and SCADA tags read over OPC UA (asyncua), behind the `Sink` contract.

`config` holds the `type = "opcua"` table and its checks (no I/O library), `status` the pure
mapping from OPC UA status codes to our quality, `certs` the client certificate made on the
gateway, `requests` the monitored items and unit look-ups built from the config, `source` the
run loop (with `requests`, the only modules that import asyncua). See docs/opcua.md.
"""
