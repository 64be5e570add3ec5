"""Configuration: frozen dataclasses loaded from TOML, with the origin of every value."""
