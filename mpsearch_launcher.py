"""The `mpsearch` console script: imports the CLI inside the Ctrl-C guard.

Importing `mpsearch` pulls in torch (seconds); a Ctrl-C then would print a Python traceback. This
module is outside the package so that its own import is instant and the guard is already in place.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    try:
        from mpsearch.cli import main as cli_main
    except KeyboardInterrupt:
        print("mpsearch: interrupted", file=sys.stderr)
        return 130
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
