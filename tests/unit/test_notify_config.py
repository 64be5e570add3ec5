"""`[notify]`: selection, rate limit and channels; every bad value one located line."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from netwatch.config import config_from_text, parse_config
from netwatch.errors import ConfigError
from netwatch.model import Severity

GOOD = """
[notify]
rules = ["vpn.*", "anon.*"]
min_severity = "high"
window = 120
burst = 2

[notify.desktop]
open_command = ["netwatch", "watch"]

[notify.webhook]
url = "https://ntfy.example/secret-topic"
shape = "ntfy"
retries = 5
min_severity = "critical"

[notify.command]
argv = ["/usr/local/bin/page", "--quiet"]
timeout = 3
"""


def test_good_notify_section() -> None:
    n = parse_config(tomllib.loads(GOOD)).notify
    assert n.selection.rules == ("vpn.*", "anon.*")
    assert n.selection.min_severity is Severity.HIGH
    assert (n.window, n.burst) == (120.0, 2)
    assert n.desktop is not None and n.desktop.open_command == ("netwatch", "watch")
    assert n.webhook is not None
    assert (n.webhook.shape, n.webhook.retries) == ("ntfy", 5)
    assert n.webhook.selection.min_severity is Severity.CRITICAL
    assert n.webhook.selection.rules is None  # inherits [notify]'s
    assert n.command is not None and n.command.argv == ("/usr/local/bin/page", "--quiet")
    assert n.command.timeout == 3.0
    assert n.enabled


def test_no_notify_section_means_no_channel() -> None:
    n = parse_config({}).notify
    assert not n.enabled
    assert n.selection.min_severity is Severity.MEDIUM


BAD = """
[notify]
min_severity = "loud"
window = -1
burst = 0
colour = "red"

[notify.webhook]
url = "ftp://user:hunter2@example.net/x"
shape = "teams"
retries = 99

[notify.command]
argv = "rm -rf /"
"""


def test_bad_values_are_located_lines_and_the_url_is_not_repeated() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_text(BAD, "config.toml")
    lines = str(err.value).split("\nnetwatch: ")
    keys = [line.split(": ")[1] for line in lines]
    assert keys == [
        "notify.colour",
        "notify.min_severity",
        "notify.window",
        "notify.burst",
        "notify.webhook.url",
        "notify.webhook.shape",
        "notify.webhook.retries",
        "notify.command.argv",
    ]
    assert lines[0].startswith("config.toml:6: ")
    assert "hunter2" not in str(err.value)


def test_channel_without_its_target_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"notify.webhook: needs url"):
        config_from_text("[notify.webhook]\nshape = 'json'\n", "c.toml")
    with pytest.raises(ConfigError, match=r"notify.command: needs argv"):
        config_from_text("[notify.command]\ntimeout = 1\n", "c.toml")


def test_bad_notify_config_is_one_line_and_exit_code(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[notify.webhook]\nurl = "not a url"\n')
    done = subprocess.run(
        [sys.executable, "-m", "netwatch", "config", "show", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"netwatch: {cfg}:2: notify.webhook.url: must be an http:// or https:// URL with a "
        "host (value not shown)"
    ]


def test_config_show_lists_notify_with_the_url_redacted(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(GOOD)
    done = subprocess.run(
        [sys.executable, "-m", "netwatch", "config", "show", "--config", str(cfg)]
        + ["--format", "jsonl"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["key"]: (r["value"], r["from"]) for r in map(json.loads, done.stdout.splitlines())}
    assert rows["notify.min_severity"] == ("high", f"{cfg}:4")
    assert rows["notify.webhook.url"] == ("https://ntfy.example/…", f"{cfg}:12")
    assert rows["notify.webhook.min_severity"] == ("critical", f"{cfg}:15")
    assert rows["notify.command.argv"] == ("/usr/local/bin/page, --quiet", f"{cfg}:18")
    assert rows["notify.queue"] == ("1000", "default")
    assert "secret-topic" not in done.stdout
