"""Deployment security on a real tritonserver: loopback by default, restricted-protocol access tokens."""

from __future__ import annotations

import ipaddress

import numpy as np
import psutil
import pytest

from ditto_triton.client import DittoClient, ServerError
from ditto_triton.model_repository.render import render_repository
from ditto_triton.model_repository.server import TritonServer

TOKEN_KEY, TOKEN = "ditto-key", "s3cret-token"
TOKEN_HEADER = f"triton-grpc-protocol-{TOKEN_KEY}"  # how tritonserver names a gRPC restricted-protocol header


@pytest.fixture(scope="module")
def guarded(tiny_export, tmp_path_factory):
    repo = render_repository(tiny_export, tmp_path_factory.mktemp("repo"), "python-ort", include_services=True)
    with TritonServer(repo, extra_args=[f"--grpc-restricted-protocol=inference:{TOKEN_KEY}={TOKEN}"]) as srv:
        yield srv


def test_the_embedded_server_listens_on_loopback_only(guarded):
    ports = {int(p) for p in (guarded.grpc_url.rsplit(":", 1)[1], guarded.http_url.rsplit(":", 1)[1])}
    listening = [c for c in psutil.Process(guarded.pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    bound = {c.laddr.port: c.laddr.ip for c in listening}
    assert ports <= set(bound), bound
    for ip in bound.values():  # 127.0.0.1, possibly as the IPv4-mapped ::ffff:127.0.0.1
        address = ipaddress.ip_address(ip)
        assert str(getattr(address, "ipv4_mapped", None) or address) == "127.0.0.1", bound


def test_inference_needs_the_access_token(guarded, portrait):
    with DittoClient(guarded.grpc_url) as anonymous, pytest.raises(ServerError, match=TOKEN_HEADER):
        anonymous.register_avatar(portrait, {"max_size": 512})
    with (
        DittoClient(guarded.grpc_url, headers={TOKEN_HEADER: "wrong"}) as wrong,
        pytest.raises(ServerError, match=TOKEN_HEADER),
    ):
        wrong.register_avatar(portrait, {"max_size": 512})
    with DittoClient(guarded.grpc_url, headers={TOKEN_HEADER: TOKEN}) as client:
        avatar = client.register_avatar(portrait, {"max_size": 512})
        assert len(list(client.stream(avatar, np.zeros(6400, np.float32)))) == 10
    with DittoClient(guarded.grpc_url) as anonymous, pytest.raises(ServerError, match=TOKEN_HEADER):
        list(anonymous.stream(avatar, np.zeros(3200, np.float32)))
