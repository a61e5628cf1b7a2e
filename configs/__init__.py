"""Shipped training recipes (YAML, MindCV key names)."""
