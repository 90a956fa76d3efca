"""kvfabric's exceptions: one per absl status code (docs/python.md, "Errors").

Every error the client raises is a `kvfabric.Error`; `code` is the status
code's name ("NOT_FOUND", ...) and `message` its text. The subclasses let
callers catch one kind: `except kvfabric.NotFoundError`.
"""


class Error(Exception):
    """A kvfabric call failed. `code`: the status code's name; `message`."""

    code = "UNKNOWN"

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class CancelledError(Error): pass
class InvalidArgumentError(Error, ValueError): pass
class DeadlineExceededError(Error, TimeoutError): pass
class NotFoundError(Error, KeyError): pass
class AlreadyExistsError(Error): pass
class PermissionDeniedError(Error, PermissionError): pass
class ResourceExhaustedError(Error): pass
class FailedPreconditionError(Error): pass
class AbortedError(Error): pass
class OutOfRangeError(Error, IndexError): pass
class UnimplementedError(Error, NotImplementedError): pass
class InternalError(Error): pass
class UnavailableError(Error, ConnectionError): pass
class DataLossError(Error): pass
class UnauthenticatedError(Error, PermissionError): pass


_BY_CODE = {
    "CANCELLED": CancelledError,
    "INVALID_ARGUMENT": InvalidArgumentError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "NOT_FOUND": NotFoundError,
    "ALREADY_EXISTS": AlreadyExistsError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "ABORTED": AbortedError,
    "OUT_OF_RANGE": OutOfRangeError,
    "UNIMPLEMENTED": UnimplementedError,
    "INTERNAL": InternalError,
    "UNAVAILABLE": UnavailableError,
    "DATA_LOSS": DataLossError,
    "UNAUTHENTICATED": UnauthenticatedError,
}


def from_status(code, message):
    """The exception for a status (used by the C++ module)."""
    return _BY_CODE.get(code, Error)(code, message)
