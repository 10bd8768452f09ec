"""Subcommands of the `grace-rl` CLI (`train`, `encode_eval`, `inspect_report`): argument parsing and printing only
(the only place that prints to stdout); each imports its heavy modules when it runs."""
