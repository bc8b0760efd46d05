"""A small plant on asyncua's own OPC UA server, for the OPC UA tests and the `opcua` bench.

`Objects/Plant/Line<k>/Tag<j>` (namespace `urn:tierless:test-plant`, node ids
`ns=<idx>;s=Line<k>.Tag<j>`), Double variables updated at `rate_hz` by a publisher task that
records every value it wrote with its source timestamp and status code (`published`), so a test
can compare what a client read with what the server published, exactly. Line 1 Tag 0 carries an
EngineeringUnits property (EUInformation "m³/h").

Security: `secure=True` offers only Basic256Sha256 and Aes128_Sha256_RsaOaep (Sign and
SignAndEncrypt) with a server certificate made here, and accepts only the client certificates
in `trusted_clients` (DER). The same `Plant` can be stopped and started again on the same port
with the same certificate: a server restart, with the nodes in `absent` left out (a PLC program
changed while the server was down). The publisher leaves the nodes in `frozen` alone: their value
and source timestamp stay as last written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import sys
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto import cert_gen
from asyncua.server.server import Server
from asyncua.ua.uaerrors import BadCertificateUntrusted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

NAMESPACE = "urn:tierless:test-plant"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Published:
    node_id: str
    value: float
    ts_ms: int  # the source timestamp, floored to the millisecond
    status: int


@dataclass
class Plant:
    variables: int = 200
    lines: int = 10
    rate_hz: float = 10.0
    secure: bool = False
    record: bool = True  # keep `published` (the bench's flat-out server counts instead)
    trusted_clients: list[bytes] = field(default_factory=list)
    absent: set[str] = field(default_factory=set)  # node ids not made at the next start
    frozen: set[str] = field(default_factory=set)  # node ids the publisher leaves alone
    port: int = field(default_factory=free_port)
    published: list[Published] = field(default_factory=list)
    # the certificate of this server, made once so that a restart presents the same one
    cert_der: bytes = b""
    key_der: bytes = b""
    ns: int = 2
    _server: Server | None = None
    _task: asyncio.Task[None] | None = None
    _lines: dict[str, Node] = field(default_factory=dict)
    _nodes: dict[str, Node] = field(default_factory=dict)
    _written_node: Node | None = None
    _status: dict[str, int] = field(default_factory=dict)
    _tick: int = 0
    written: int = 0

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/plant"

    def node_ids(self) -> list[str]:
        return [f"ns={self.ns};s={name}" for name in self._names()]

    def _names(self) -> list[str]:
        per_line = -(-self.variables // self.lines)
        return [f"Line{i // per_line + 1}.Tag{i % per_line}" for i in range(self.variables)]

    async def start(self) -> None:
        logging.getLogger("asyncua").setLevel(logging.ERROR)
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/plant")
        server.set_server_name("Tierless test plant")
        await server.set_application_uri("urn:tierless:test-plant:server")
        if self.secure:
            if not self.cert_der:
                self.cert_der, self.key_der = _server_identity()
            await server.load_certificate(self.cert_der)
            await server.load_private_key(self.key_der)
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
                    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
                ]
            )

            async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
                # read at each handshake: a test trusts a client while the server runs
                if cert.public_bytes(serialization.Encoding.DER) not in self.trusted_clients:
                    raise BadCertificateUntrusted()  # type: ignore[no-untyped-call]  # asyncua's generated errors

            server.set_certificate_validator(validate)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self._server = server
        self.ns = await server.register_namespace(NAMESPACE)
        plant = await server.nodes.objects.add_object(self.ns, "Plant")
        self._lines = {}
        self._nodes = {}
        for name in self._names():
            line_name = name.split(".")[0]
            if line_name not in self._lines:
                self._lines[line_name] = await plant.add_object(self.ns, line_name)
            if f"ns={self.ns};s={name}" not in self.absent:
                await self._add(name)
        first = self._nodes[f"ns={self.ns};s=Line1.Tag0"]
        eu = ua.EUInformation()
        eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
        eu.UnitId = 4666675  # MQH
        eu.DisplayName = ua.LocalizedText("m³/h")
        eu.Description = ua.LocalizedText("cubic metre per hour")
        await first.add_property(0, "EngineeringUnits", eu)
        # how many values the publisher wrote so far (the bench reads it)
        self._written_node = await plant.add_variable(
            ua.NodeId(ua.String("Plant.Written"), ua.Int16(self.ns)),
            ua.QualifiedName("Written", self.ns),
            0.0,
            ua.VariantType.Double,
        )
        await server.start()
        self._task = asyncio.create_task(self._publish(), name="plant-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> Plant:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _add(self, name: str) -> None:
        line_name, tag = name.split(".")
        node = await self._lines[line_name].add_variable(
            ua.NodeId(ua.String(name), ua.Int16(self.ns)),
            ua.QualifiedName(tag, self.ns),
            0.0,
            ua.VariantType.Double,
        )
        self._nodes[f"ns={self.ns};s={name}"] = node
        await self.write(f"ns={self.ns};s={name}", 0.0)  # its first value, recorded too

    async def restore(self, node_id: str) -> None:
        """A deleted node is back (the PLC program changed again)."""
        await self._add(node_id.split("=")[-1])

    def set_status(self, node_id: str, code: int) -> None:
        """Publish `node_id`'s next values with this status code."""
        self._status[node_id] = code

    async def delete(self, node_id: str) -> None:
        """The node disappears from the address space (a PLC program changed)."""
        assert self._server is not None
        node = self._nodes.pop(node_id)
        await self._server.delete_nodes([node], recursive=True)

    async def write(self, node_id: str, value: float) -> Published:
        """Write one value now, recorded like the publisher's."""
        assert self._server is not None
        now = dt.datetime.now(dt.UTC)
        code = self._status.get(node_id, 0)
        await self._server.write_attribute_value(
            self._nodes[node_id].nodeid,
            ua.DataValue(
                ua.Variant(value, ua.VariantType.Double),
                StatusCode=ua.StatusCode(ua.UInt32(code)),
                SourceTimestamp=now,  # type: ignore[arg-type]  # ua.DateTime is a datetime
                ServerTimestamp=now,  # type: ignore[arg-type]
            ),
        )
        p = Published(node_id, value, (now - _EPOCH) // _MS, code)
        self.written += 1
        if self.record:
            self.published.append(p)
        return p

    async def _publish(self) -> None:
        """Every variable once per period; `rate_hz = 0`: as fast as the server can."""
        period = 1.0 / self.rate_hz if self.rate_hz > 0 else 0.0
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self._tick += 1
            for i, node_id in enumerate(list(self._nodes)):
                if node_id in self.frozen:
                    continue
                await self.write(node_id, self._tick * 0.25 + i)
                if i % 50 == 49:  # writes do not yield: let the server answer in between
                    await asyncio.sleep(0)
            if self._written_node is not None:
                await self._written_node.write_value(float(self.written))
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))

    def values_of(self, node_id: str) -> list[Published]:
        return [p for p in self.published if p.node_id == node_id]


def _server_identity() -> tuple[bytes, bytes]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        "Tierless test plant",
        {"organizationName": "Tierless"},
        [
            x509.UniformResourceIdentifier("urn:tierless:test-plant:server"),
            x509.DNSName("localhost"),
        ],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.DER), key_der


async def _serve(variables: int, port: int, rate_hz: float) -> None:
    plant = Plant(variables=variables, lines=10, rate_hz=rate_hz, port=port, record=False)
    async with plant:
        print("ready", flush=True)
        await asyncio.Event().wait()  # until the bench terminates the process


def main() -> None:
    """`python -m bench.opcua_plant VARIABLES PORT [RATE_HZ]`: a plant in its own process."""
    variables, port = int(sys.argv[1]), int(sys.argv[2])
    rate_hz = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(variables, port, rate_hz))


if __name__ == "__main__":
    main()
