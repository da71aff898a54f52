"""The wheel's package list must cover the source tree: an editable install imports any subpackage, so a
package missing from pyproject.toml only breaks regular installs (pip install ., wheels) — where no other test
runs."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CFG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
DIRS = CFG["package-dir"]


def folder(pkg: str) -> Path:
    """Where `pkg` lives under the package-dir mapping."""
    head = next(p for p in sorted(DIRS, key=len, reverse=True) if pkg == p or pkg.startswith(p + "."))
    return ROOT / DIRS[head] / Path(*pkg[len(head):].split(".")[1:])


def test_every_source_package_is_listed():
    found = {".".join((pkg, *init.parent.relative_to(ROOT / src).parts))
             for pkg, src in DIRS.items() for init in (ROOT / src).rglob("__init__.py")}
    listed = set(CFG["packages"])
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    for pkg in listed - found:  # data-only folders (the spec files) are listed so a regular install ships them
        assert folder(pkg).is_dir() and any(folder(pkg).iterdir()), f"{pkg} is listed but has no folder"


def test_package_data_patterns_match_files():
    for pkg, patterns in CFG["package-data"].items():
        for pat in patterns:
            assert list(folder(pkg).glob(pat)), f"package-data {pkg}: {pat!r} matches no file in {folder(pkg)}"
