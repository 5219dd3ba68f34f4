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


class UnknownAvatarError(ServerError):
    """The replica the session reached does not have the avatar (registered on another replica, or
    evicted) and no image came with the session: register it again through this client, which then
    sends the image with each session's START."""


class ConnectionLostError(ServerUnavailableError):
    """The stream to the server broke mid-session (server stopped or restarted, network gone)."""
