"""Loopback names and addresses, judged from the text alone."""

from __future__ import annotations

import pytest

from hostio.loopback import is_loopback


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LocalHost",
        "127.0.0.1",
        "127.0.0.2",
        "127.255.255.254",
        "::1",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost.example.com",
        "10.0.0.1",
        "0.0.0.0",
        "::",
        "::ffff:10.0.0.1",
        "128.0.0.1",
        "",
        "127.0.0.1.nip.io",
    ],
)
def test_not_loopback(host):
    assert not is_loopback(host)
