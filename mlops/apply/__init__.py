"""apply: execute a saved plan with a journal, a lock, gated checkpoints and rollback."""
