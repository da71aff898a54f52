"""Subcommand registry: each verb is one module that registers (add_arguments, run) in the one `Registry`
type every named plug-in uses (verbs are listed in registration order)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from ..registry import Registry


@dataclass
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: Registry[Command] = Registry("command", ordered=True)


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Decorator on a `run(args)` function; `arguments(parser)` adds the verb's flags."""

    def deco(run):
        COMMANDS.register(name)(Command(name, help, arguments or (lambda p: None), run))
        return run

    return deco
