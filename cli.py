"""
What every command line here shares: errors in one line, and output directories checked before
any work. A script's bad option is one line on stderr and exit code 2, never argparse's usage
screen or a traceback after minutes of work.
"""
import argparse
import os
import sys


class OneLineErrors(argparse.ArgumentParser):
    """argparse, its errors in one line instead of the whole usage (which --help prints)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def usage_error(message: str):
    """A bad option or input found before any work: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def unwritable(path: str):
    """None once `path` exists (created if need be) and takes a file; else the one-line problem."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        open(probe, "wb").close()
        os.remove(probe)
    except OSError as e:
        return f"{path}: output directory is not writable ({e.strerror})"
    return None
