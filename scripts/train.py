"""Thin wrapper: ``python scripts/train.py ARGS`` is ``jaxmlp train ARGS``."""
import sys

from jaxmlp.app._entry import train_main

if __name__ == "__main__":
    sys.exit(train_main())
