"""CLI commands: one module per command, each exporting `command` (imported lazily by mlops.cli)."""
