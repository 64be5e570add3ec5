"""Where netwatch keeps its files: config, cache, data and runtime paths, in one place.

Follows XDG for users and FHS for the system service; every path can be overridden by the
caller. Imports nothing from the rest of netwatch.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "netwatch"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_dir() -> Path:
    """Return the user's config directory (`$XDG_CONFIG_HOME/netwatch`)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def cache_dir() -> Path:
    """Return the user's cache directory (`$XDG_CACHE_HOME/netwatch`), e.g. for RDAP answers."""
    return _xdg("XDG_CACHE_HOME", ".cache") / APP


def data_dir() -> Path:
    """Return the user's data directory (`$XDG_DATA_HOME/netwatch`): updated GeoIP, lists."""
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def state_dir() -> Path:
    """Return the state directory: `$STATE_DIRECTORY` under systemd, else the XDG state dir."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def system_config_file() -> Path:
    """Return the system-wide config file: in `$CONFIGURATION_DIRECTORY`, else /etc/netwatch.

    systemd sets `CONFIGURATION_DIRECTORY` for the unit (`ConfigurationDirectory=netwatch`:
    /etc/netwatch), as it sets the state and runtime folders read above.
    """
    systemd = os.environ.get("CONFIGURATION_DIRECTORY")
    if systemd and os.path.isabs(systemd.split(":")[0]):
        return Path(systemd.split(":")[0]) / "config.toml"
    return Path("/etc") / APP / "config.toml"


def default_db() -> Path:
    """Return the default SQLite store path."""
    return state_dir() / "netwatch.db"


def default_socket() -> Path:
    """Return the daemon's Unix socket: `$RUNTIME_DIRECTORY` under systemd, else /run/netwatch."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "netwatch.sock"
    if os.geteuid() == 0:
        return Path("/run") / APP / "netwatch.sock"
    xdg_runtime = os.environ.get("XDG_RUNTIME_DIR")
    if xdg_runtime:
        return Path(xdg_runtime) / APP / "netwatch.sock"
    return state_dir() / "netwatch.sock"
