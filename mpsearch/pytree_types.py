"""Output types a `.pt2` names in its pytree specs, made known before torch reads the archive.

An exported Hugging Face model returns a `ModelOutput` dataclass; torch stores its type by name and,
in a fresh process, refuses to rebuild a type nobody registered. Transformers registers every
`ModelOutput` subclass with pytree when the defining module is imported, so importing that module
is enough. Only modules of the libraries below are imported (an installed library, never code from
the file), so loading a `.pt2` stays free of the file's own code.
"""

from __future__ import annotations

import importlib
import re
import zipfile
from pathlib import Path

# libraries whose output classes register themselves with torch's pytree on import
TRUSTED_PREFIXES = ("transformers.",)
_TYPE = re.compile(rb'type\\*"\s*:\s*\\*"([A-Za-z_][\w.]*)')


def named_types(path: str | Path) -> set[str]:
    """Fully qualified pytree type names the archive's input/output specs use."""
    out: set[str] = set()
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(".json") and "/models/" in name:
                out |= {m.decode() for m in _TYPE.findall(z.read(name))}
    return out


def register_for(path: str | Path) -> list[str]:
    """Import the trusted modules defining the archive's output types; returns the modules imported."""
    done = []
    for t in sorted(named_types(path)):
        if not t.startswith(TRUSTED_PREFIXES):
            continue
        module = t.rpartition(".")[0]
        try:
            importlib.import_module(module)
        except ImportError:  # not installed: torch's own error says which type is missing
            continue
        done.append(module)
    return done


def unregistered(path: str | Path) -> list[str]:
    """Dotted type names in the archive's specs that torch's pytree cannot rebuild (for the error message)."""
    from torch.utils._pytree import SERIALIZED_TYPE_TO_PYTHON_TYPE

    return sorted(t for t in named_types(path) if "." in t and t not in SERIALIZED_TYPE_TO_PYTHON_TYPE)
