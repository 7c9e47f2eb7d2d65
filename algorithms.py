"""Every algorithm of this repository, found by looking: no list to keep.

An algorithm file is a `*.py` at the repository root or in `fully_supervised/` that ends with
`cli.main(...)`. Importing it registers the methods its classes declare (`Algorithm.methods`,
libml/algorithm.py); `load()` imports them all and returns the registry, which the benchmark,
the demo and the reproduction tables read. The library itself never imports these files.
"""

import glob
import importlib
import os
import re
import sys

from libml import algorithm

ROOT = os.path.dirname(os.path.abspath(__file__))
FOLDERS = ('', 'fully_supervised')
ENTRY = re.compile(r'^\s+cli\.main\(\w+\)', re.MULTILINE)  # under `if __name__ == '__main__':`


def files():
    """Paths of the algorithm files, sorted: those that run `cli.main(...)`."""
    found = []
    for folder in FOLDERS:
        for path in sorted(glob.glob(os.path.join(ROOT, folder, '*.py'))):
            with open(path) as f:
                if ENTRY.search(f.read()):
                    found.append(path)
    return found


def module_name(path):
    """'realmix' for ROOT/realmix.py, 'fully_supervised.fs_baseline' for one in that package."""
    parts = os.path.relpath(path, ROOT)[: -len('.py')].split(os.sep)
    return '.'.join(parts)


def load():
    """Imports every algorithm file (once) and returns the registered methods, by rank."""
    if ROOT not in sys.path:
        sys.path.append(ROOT)  # the root's modules import each other by name (mean_teacher -> pi_model)
    for path in files():
        importlib.import_module(module_name(path))
    return algorithm.registered()
