"""The receiver: verifies signed batches from gateways and stores them in the platform tables."""
