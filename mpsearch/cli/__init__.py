"""`mpsearch` command line: thin verbs over the Python API. Errors print as one line, exit non-zero."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .._version import __version__
from ..errors import MpsearchError
from . import (  # noqa: F401  (register the verbs)
    apply_cmd,
    autotune_cmd,
    check_cmd,
    eval_cmd,
    examples_cmd,
    export_cmd,
    formats_cmd,
    hardware_cmd,
    pareto_cmd,
    plan_cmd,
    sensitivity_cmd,
    sites_cmd,
    study_cmd,
)
from ._registry import COMMANDS


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mpsearch", description="Mixed-precision search for PyTorch models.")
    p.add_argument("--version", action="version", version=f"mpsearch {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for c in COMMANDS.values():
        sp = sub.add_parser(c.name, help=c.help, description=c.help)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        c.add_arguments(sp)
        sp.set_defaults(_run=c.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # what the other ranks of --devices run
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, format="%(message)s")
    try:
        from ..validate import check_cli_outputs

        check_cli_outputs(args.command, args)  # an unwritable -o fails now, not after the work
        return int(args._run(args) or 0)
    except MpsearchError as e:
        if args.debug:
            raise
        print(f"mpsearch: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mpsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the reader left: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
        return 0
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback only with --debug
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"mpsearch: internal error: {type(e).__name__}: {first} "
              "(rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
