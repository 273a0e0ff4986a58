"""Live state: one snapshot of registry, runtime and traffic."""
