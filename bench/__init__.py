"""Benchmarks of incv4 against the implementations a user would otherwise pick (MindCV, PyTorch/timm), measured
side by side in one run on the same machine. Run `python -m bench --help`. Never part of CI; no test asserts timing."""
