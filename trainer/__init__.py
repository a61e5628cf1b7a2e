"""The in-pod trainer."""
