"""gRPC streaming client for Ditto on Triton: register an avatar, stream audio, receive frames.

from ditto_triton.client import DittoClient, load_audio

with DittoClient("127.0.0.1:8001") as client:
    avatar = client.register_avatar(Path("face.jpg").read_bytes())
    for frame in client.stream(avatar, load_audio("speech.wav")):
        ...  # frame.index, frame.pts_s, frame.rgb (H, W, 3) uint8
"""

from ditto_triton.client.audio import load_audio
from ditto_triton.client.errors import (
    ConnectionLostError,
    DittoClientError,
    ServerBusyError,
    ServerError,
    ServerUnavailableError,
    UnknownAvatarError,
)
from ditto_triton.client.session import DittoClient, ReceivedFrame, StreamSession

__all__ = [
    "ConnectionLostError",
    "DittoClient",
    "DittoClientError",
    "ReceivedFrame",
    "ServerBusyError",
    "ServerError",
    "ServerUnavailableError",
    "StreamSession",
    "UnknownAvatarError",
    "load_audio",
]
