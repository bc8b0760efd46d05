"""The cloud's config-signing key: an Ed25519 key of its own (never a device key) that signs
every config pushed to a gateway (`wire.remoteconfig`). Its public half goes to each gateway in
the enrol answer (`Enrolled.config_key`), which pins it.

Like the operator tokens (`cloud.receiver.tokenfiles`) it comes from a file named by a flag or
the environment, or it is generated on first start into a new 0600 file whose path is printed;
the file is read with the OpenSSH rule (`hostio.secretfiles`: a file others can read is refused).
Several receivers on one database must share the file: a gateway pins one key.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.errors import ConfigError
from hostio.errors import SecretFileError
from hostio.secretfiles import exists, read_secret_file, write_secret_file
from wire.errors import SignatureError
from wire.keys import b64url_encode, load_private_key_pem, private_key_to_pem, public_key_to_raw

MAX_KEY_FILE_BYTES = 4096
WHAT = "config-signing key file"


def read_config_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = read_secret_file(path, what=WHAT, max_bytes=MAX_KEY_FILE_BYTES).data
        return load_private_key_pem(data)
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    except SignatureError as exc:
        raise ConfigError([f"{WHAT} '{path}': {exc}"]) from exc


def load_or_create_config_key(
    *, file: Path | None, default_file: Path
) -> tuple[Ed25519PrivateKey, str | None]:
    """The key, and a notice to print when a file was created (else None)."""
    if file is not None:
        return read_config_key(file), None
    if exists(default_file):
        return read_config_key(default_file), None
    key = Ed25519PrivateKey.generate()
    try:
        write_secret_file(default_file, private_key_to_pem(key), what=WHAT)
    except SecretFileError as exc:
        raise ConfigError([str(exc)]) from exc
    return key, f"config-signing key: created {default_file} (mode 0600)"


def public_config_key(key: Ed25519PrivateKey) -> str:
    """What the enrol answer carries: the raw public key, base64url."""
    return b64url_encode(public_key_to_raw(key.public_key()))
