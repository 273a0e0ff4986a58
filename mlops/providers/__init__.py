"""Providers: the only code that talks to the outside world (MLflow, engines, Prometheus...)."""
