"""The national matching service: registry, clinic uploads, positive cases, matching, exports."""

VERSION = "0.1.0"


class ServiceError(Exception):
    """Root of the service's own errors; each subclass carries a one-sentence message."""


class SettingsError(ServiceError):
    """Start-up settings are invalid; `problems` lists every one found, not just the first."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems))


class RequestError(ServiceError):
    """A request the service refuses; the API turns it into `status` and {"error": message}."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **detail):
        self.detail = detail
        super().__init__(message)


class InvalidInput(RequestError):
    status = 422
    code = "invalid_input"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class Conflict(RequestError):
    status = 409
    code = "conflict"


class Forbidden(RequestError):
    status = 403
    code = "forbidden"


class TooManyRequests(RequestError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float = 1.0, **detail):
        self.retry_after_s = retry_after_s
        super().__init__(message, **detail)


class Unauthorized(RequestError):
    status = 401
    code = "unauthorized"
