"""Errors the engine answers with, one class per HTTP status.

Each carries a one-line message that goes into the V2 error body as is; the front door never
lets any other exception reach a client (it becomes a generic 500 with one line).
"""

from __future__ import annotations

from mlops import errors


class ServingError(errors.MlopsError):
    """Root of engine errors; `status` is the HTTP status the front door answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        # A message that spans lines would break the one-line contract of error bodies.
        super().__init__(" ".join(message.split()))


class BadRequest(ServingError):
    """Malformed JSON, tensor or parameter: the client's fault, never a model error."""

    status = 400


class NotFound(ServingError):
    """Unknown model, version or route."""

    status = 404


class Forbidden(ServingError):
    """An admin endpoint asked on the inference address, or without the admin token."""

    status = 403


class MethodNotAllowed(ServingError):
    status = 405


class Conflict(ServingError):
    """A routing change that would go backwards or orphan traffic."""

    status = 409


class PayloadTooLarge(ServingError):
    status = 413


class ModelFailure(ServingError):
    """onnxruntime raised while running the model."""

    status = 500


class Overloaded(ServingError):
    """The version's queue is full: answer at once rather than let the client time out."""

    status = 503
