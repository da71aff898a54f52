"""`python -m mpsearch`: the CLI, with Ctrl-C during its imports reported like the console script's."""

import sys

from ._interrupt import release

try:
    from .cli import main
except KeyboardInterrupt:  # not guarded by `__init__` (e.g. runpy of this file directly)
    print("mpsearch: interrupted", file=sys.stderr)
    sys.exit(130)
release()
sys.exit(main())
