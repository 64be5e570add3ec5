"""`python -m netwatch` runs the command line, exactly like the `netwatch` script."""

from netwatch.cli import main

raise SystemExit(main())
