"""Subcommands of the ``grace-rl`` CLI (the only place that prints to stdout)."""
