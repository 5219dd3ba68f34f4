"""Client-side errors: one clear line each, never a gRPC traceback."""


class DittoClientError(RuntimeError):
    """Base class of every error the client raises."""


class ServerUnavailableError(DittoClientError):
    """The server cannot be reached (down, wrong URL) or is not ready."""


class ServerError(DittoClientError):
    """The server answered a request with an error; the message is the server's."""


class ServerBusyError(ServerError):
    """The server refused a new session because it is at its session limit ("resource exhausted");
    retry later or on another replica."""


class ConnectionLostError(ServerUnavailableError):
    """The stream to the server broke mid-session (server stopped or restarted, network gone)."""
