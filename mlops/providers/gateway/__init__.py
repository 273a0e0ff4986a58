"""A traffic-splitting gateway on loopback (Debian's nginx): weights, mirroring, reload without
dropping a request. Used by the container runtime and the Kubernetes stand-in."""

from mlops.providers.gateway.nginx import Gateway, install
from mlops.providers.gateway.routes import Backend, Route

__all__ = ["Backend", "Gateway", "Route", "install"]
