"""Conformance of a loaded version: artifact checksum, validation accuracy, latency."""

from mlops.conformance.runner import run

__all__ = ["run"]
