#!/usr/bin/env python3
"""The echod race (`make bench`); the race itself is the package bench/race (see race/cli.py and bench/README.md)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from race.cli import main

if __name__ == "__main__":
    sys.exit(main())
