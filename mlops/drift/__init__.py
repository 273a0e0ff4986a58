"""Feature drift: statistics against the training baseline, reports, and the on_drift hook."""
