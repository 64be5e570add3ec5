"""What netwatch may advise a user who lacks privileges: checked by unit and live tests."""

from __future__ import annotations

import os
import sys


def assert_no_capability_advice(line: str) -> None:
    """No setcap advice, and any path the line names is netwatch's own, not a shared binary.

    In a venv `bin/python` is a symlink to the system's interpreter: capabilities on it (or on
    what it resolves to) reach every Python program of every user.
    """
    assert "setcap" not in line and "+eip" not in line
    for word in line.replace(",", " ").replace(";", " ").split():
        if word.startswith("/") and os.path.exists(word):
            assert not os.path.islink(word), word
            assert os.path.realpath(word).startswith(sys.prefix + os.sep), word
