"""Client-side errors: one clear line each, never a gRPC traceback."""


class DittoClientError(RuntimeError):
    """Base class of every error the client raises."""


class ServerUnavailableError(DittoClientError):
    """The server cannot be reached (down, wrong URL) or is not ready."""


class ServerError(DittoClientError):
    """The server answered a request with an error; the message is the server's."""
