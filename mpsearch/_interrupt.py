"""Ctrl-C during `python -m mpsearch`'s imports: one line and exit 130, as the `mpsearch` console script does.

`python -m mpsearch` imports the package (torch: seconds) before `__main__` runs, so no try/except there can
catch a Ctrl-C in that time. The package's `__init__` installs this SIGINT handler first, only when it is
being run with -m; `__main__` puts Python's own handler back once the CLI is imported. Nothing is written
during imports, so leaving at once is safe.
"""

from __future__ import annotations

import signal
import sys


def _interrupted(signum, frame) -> None:
    print("mpsearch: interrupted", file=sys.stderr)
    raise SystemExit(130)


def _run_with_m() -> bool:
    """True while `python [flags] -m mpsearch` locates the module (sys.argv[0] is "-m" until it runs)."""
    argv = list(getattr(sys, "orig_argv", []))
    if sys.argv[:1] != ["-m"]:
        return False
    return any(a == "-m" and b == "mpsearch" for a, b in zip(argv, argv[1:])) or "-mmpsearch" in argv


def guard_imports() -> None:
    """Under `python -m mpsearch`, until `release()`: a SIGINT prints "mpsearch: interrupted" and exits 130."""
    if _run_with_m() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted)


def release() -> None:
    """Python's own Ctrl-C (KeyboardInterrupt) again, for the CLI's handler to report."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
