"""Thin wrapper: ``python scripts/train.py ARGS`` is ``jaxmlp-train ARGS``."""
import sys

from jaxmlp.cli import main

if __name__ == "__main__":
    sys.exit(main())
