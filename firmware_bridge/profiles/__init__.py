"""Device profiles: register maps of real meters as TOML data, each citing its source document."""
