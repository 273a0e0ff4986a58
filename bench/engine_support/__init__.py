"""Helpers for bench/engine.py: model generators, the bare handler, the MLServer runtime."""
