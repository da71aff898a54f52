"""`python -m mpsearch` interrupted by Ctrl-C while it imports: one line, exit 130 (as the console script).

The signal must land during the imports, deterministically: a `sitecustomize` on PYTHONPATH makes the
import of one mpsearch module announce itself on stderr and sleep, and the test sends SIGINT after the
announcement (the sleep is the import taking long; nothing is timed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

SLOW_IMPORT = '''
import importlib.abc, sys, time

class _Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.stderr.write("importing\\n")
            sys.stderr.flush()
            time.sleep(120)
        return None

sys.meta_path.insert(0, _Slow())
'''


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("module", ["mpsearch.api", "mpsearch.cli"],
                         ids=["while the package imports", "while the CLI imports"])
def test_ctrl_c_during_python_m_imports_is_one_line_and_130(module, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT.format(module=module))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH"))
                                                       if p)}
    proc = subprocess.Popen([sys.executable, "-m", "mpsearch", "formats"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline() == "importing\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err == "mpsearch: interrupted\n" and out == ""
