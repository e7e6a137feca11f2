"""Prints the seed's 2×2 example (HW2 Problem 3): X = I, Y = I, W = 0, b = 0, SGD lr 2.0.

Usage: python scripts/toy_trace.py [--lr 2.0] [--iterations 2]   (the same as ``jaxmlp toy``)
"""
import sys

from jaxmlp.app._cli import main

if __name__ == "__main__":
    sys.exit(main(["toy", *sys.argv[1:]]))
