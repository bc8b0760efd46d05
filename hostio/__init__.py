"""Code about the local machine that several Tierless processes share: secret files, loopback
checks, the clock's sync state, Prometheus text, the signed HTTP client. May import wire only."""
