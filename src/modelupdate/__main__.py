import os
import sys

# `python -m` puts the current folder first on sys.path: a file there (numpy.py, a module a checkpoint
# names) must not shadow the installed packages.
if sys.path and sys.path[0] in ("", os.getcwd()):
    sys.path.pop(0)

from .cli import main  # noqa: E402

main()
