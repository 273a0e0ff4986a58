"""The local target's container runtime (`serve.runtime: container`): each model version runs
as its built image behind a traffic-splitting gateway. See docs/containers.md."""
