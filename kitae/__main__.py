"""``python -m kitae``: the command line (see :mod:`kitae.cli`)."""

from __future__ import annotations

import sys

from kitae.cli import main

if __name__ == "__main__":
    sys.exit(main())
