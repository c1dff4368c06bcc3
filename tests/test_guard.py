import socket

import pytest


def test_real_provider_hosts_are_unreachable() -> None:
    for host in ("generativelanguage.googleapis.com", "api.openai.com", "api.replicate.com", "api.bfl.ai"):
        with pytest.raises(OSError, match="loopback"):
            socket.getaddrinfo(host, 443)


def test_loopback_resolves() -> None:
    assert socket.getaddrinfo("127.0.0.1", 80)
