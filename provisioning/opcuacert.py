"""`edgectl opcua cert`: the OPC UA client certificate of one `opcua` source, made on the gateway.

The pair is made by `hostio.opcuacert`, the code the source itself runs on first start when
both files are missing, so a certificate made here and one made by the agent are the same kind:
the source's `cert_file`, `key_file` and application URI (its `application_uri`, or the default
`urn:tierless:<host>:<name>`, so run this on the gateway the source runs on). The key is written
mode 0600 through `hostio.secretfiles`; an existing file is refused unless `force`, because the
server trusts the old certificate and would refuse the new one until it is added there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config import opcua_sources
from hostio.errors import SecretFileError, SecretFileExistsError
from hostio.opcuacert import (
    default_application_uri,
    fingerprint,
    sha1_thumbprint,
    write_client_identity,
)
from provisioning import agentconfig
from provisioning.errors import LocalError


@dataclass(frozen=True, slots=True)
class OpcuaCert:
    source: str
    cert_file: Path
    key_file: Path
    application_uri: str
    sha256: str
    sha1: str

    def lines(self) -> list[str]:
        return [
            f"source {self.source}: wrote {self.cert_file} (certificate) and {self.key_file} "
            "(private key, mode 0600)",
            f"application URI: {self.application_uri}",
            f"SHA-256 thumbprint: {self.sha256}",
            f"SHA-1 thumbprint:   {self.sha1}  (what most servers show)",
            f"next: copy {self.cert_file} (public) into the OPC UA server's trusted certificates",
            "(its trust list, e.g. pki/trusted/certs/, or 'trust' it in the server's rejected "
            "list) and check the thumbprint there; the key never leaves this gateway",
        ]


def make_cert(config_file: Path, source: str | None, *, force: bool) -> OpcuaCert:
    """Make and write the client certificate of `source` (or of the only OPC UA source with
    security on) of `config_file`. LocalError for everything the operator must fix."""
    config = agentconfig.read(config_file).agent
    secured = [s for s in opcua_sources(config) if s.security_policy != "None"]
    names = ", ".join(s.name for s in secured) or "none"
    if source is None:
        if len(secured) != 1:
            raise LocalError(
                f"{config_file}: {len(secured)} OPC UA sources with a security_policy "
                f"({names}); name one with --source"
            )
        chosen = secured[0]
    else:
        found = [s for s in secured if s.name == source]
        if not found:
            raise LocalError(
                f"{config_file}: no OPC UA source {source!r} with a security_policy "
                f"(those with one: {names})"
            )
        chosen = found[0]
    uri = chosen.application_uri or default_application_uri(chosen.name)
    cert_file, key_file = Path(chosen.cert_file), Path(chosen.key_file)
    try:
        cert_der, _ = write_client_identity(cert_file, key_file, uri, replace=force)
    except SecretFileExistsError as exc:
        raise LocalError(
            f"{exc}; pass --force to replace the pair (the server must then be given the new "
            "certificate)"
        ) from exc
    except SecretFileError as exc:
        raise LocalError(str(exc)) from exc
    return OpcuaCert(
        chosen.name, cert_file, key_file, uri, fingerprint(cert_der), sha1_thumbprint(cert_der)
    )
