"""Shared start-up for the Python echo peers: argument parsing, optional uvloop."""

import argparse
import asyncio
import importlib
import subprocess
import sys


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("port", type=int, help="port to listen on (127.0.0.1)")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop instead of the asyncio default loop")
    return p.parse_args()


def run(main_coro_factory, use_uvloop):
    """Run main() on the default loop or on uvloop (pip-installing uvloop if it is missing)."""
    if use_uvloop:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "uvloop"])
            uvloop = importlib.import_module("uvloop")
        if hasattr(uvloop, "run"):
            return uvloop.run(main_coro_factory())
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(main_coro_factory())
