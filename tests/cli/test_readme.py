"""The README's two opening commands are what CI and a newcomer run."""

from __future__ import annotations

import re
from pathlib import Path


def _readme_commands(root: Path) -> list[str]:
    text = (root / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_ci_runs_exactly_the_readme_test_command(repo_root: Path) -> None:
    commands = _readme_commands(repo_root)
    assert len(commands) >= 2
    test_command = commands[1]
    assert "pytest" in test_command
    ci_lines = (repo_root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines


def test_readme_first_command_starts_the_dashboard(repo_root: Path) -> None:
    first = _readme_commands(repo_root)[0]
    assert first.rstrip().endswith("bin/netwatch")
    assert "pip install ." in first


def _rules_list(config_text: str, tmp_path: Path) -> str:
    import subprocess
    import sys

    config = tmp_path / "config.toml"
    config.write_text(config_text, encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "rules", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_readme_config_examples_are_valid_configs(repo_root: Path, tmp_path: Path) -> None:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.+?)\n```", text, flags=re.S)
    (policy,) = [b for b in blocks if "[[policy.expected_vpn]]" in b]
    (daemon,) = [b for b in blocks if "[daemon]" in b]
    out = _rules_list(policy, tmp_path)
    actions = {line.split()[0]: line.split() for line in out.splitlines() if line}
    assert actions["vpngate.list_fetch"][2] == "log"  # RULE SEVERITY ACTION ...
    assert actions["geo.new_country"][2] == "ignore"
    for block in blocks:  # every other example too (e.g. [policy.tunnel]) is a valid config
        _rules_list(block, tmp_path)


def test_readme_never_advises_capabilities_on_an_interpreter(repo_root: Path) -> None:
    """A venv's python is a symlink to the system's: setcap on it reaches every user."""
    for command in _readme_commands(repo_root):
        assert "setcap" not in command, command


def test_readme_states_the_python_requirement_before_the_commands(repo_root: Path) -> None:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    assert text.index("Python 3.11") < text.index("```sh")
    assert text.index("git clone") < text.index("```sh")


def test_the_units_documentation_is_a_file_the_readme_installs(repo_root: Path) -> None:
    """`Documentation=` must name something `systemctl help netwatch` can open."""
    unit = (repo_root / "packaging" / "systemd" / "netwatch.service").read_text(encoding="utf-8")
    (doc,) = re.findall(r"^Documentation=file://(\S+)$", unit, flags=re.M)
    (service_install,) = [c for c in _readme_commands(repo_root) if "systemctl enable" in c]
    installs = re.findall(r"install -m 0644 (\S+) (\S+)", service_install)
    assert any(dest == doc and (repo_root / src).is_file() for src, dest in installs), installs
