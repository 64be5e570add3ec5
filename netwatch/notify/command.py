"""The command channel: run a configured program (no shell) with the note as JSON on stdin.

For anything netwatch does not speak itself. The JSON is `Note.to_dict`: title, body,
severity, whether it is a digest, and the alerts as the codec's records. The program runs as
the daemon's user, with a timeout; its output is discarded, a non-zero exit is a failure.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from netwatch.notify.note import Note


class CommandChannel:
    """Runs `argv` once per note."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.name = f"command:{self.argv[0]}"

    def send(self, note: Note) -> None:
        """Run the program; a failure to start, a timeout or a non-zero exit raise OSError."""
        try:
            done = subprocess.run(  # noqa: S603  # argv from the admin's config, no shell
                self.argv,
                input=note.to_json().encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OSError(f"{self.argv[0]} ran longer than {self.timeout:g} s; killed") from None
        if done.returncode != 0:
            raise OSError(f"{self.argv[0]} exited with {done.returncode}")

    def close(self) -> None:
        """Nothing to release."""
