"""Metrics backends behind `base.Metrics`: Prometheus over PromQL, and the engine's own
counters (`builtin`) read directly when no Prometheus is configured; `series` is the
arithmetic on counter samples both share."""
