"""
What every command line here shares: errors in one line, and output directories checked before
any work. A script's bad option is one line on stderr and exit code 2, never argparse's usage
screen or a traceback after minutes of work. And the one line that says which CPU a figure
came from, for every log that prints one.
"""
import argparse
import os
import platform
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


# oneDNN picks its int8 and bf16 kernels by these: VNNI (or AMX-INT8) for int8 Linear, AVX512-BF16 (or
# AMX-BF16) for the encoder's bf16 math mode. Two CPUs with one model name can differ (VMs mask flags),
# so a CPU figure means little without them.
ISA_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """'<model name> (as lscpu shows it), N cores, ISA: <the flags above that it has>'."""
    model, flags = platform.processor() or "?", set()
    if os.path.exists(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if model != "?" and flags:
                    break
    isa = " ".join(flag for flag in ISA_FLAGS if flag in flags) or "none of " + " ".join(ISA_FLAGS)
    return f"{model}, {os.cpu_count()} cores, ISA: {isa}"
