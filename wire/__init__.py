"""The contract between gateway and cloud: models, batch codec, digests and signatures. No I/O."""

PROTOCOL_VERSION = 1
