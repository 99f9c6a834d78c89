"""Which hosts a release may make the rebuild fetch: public http(s) only; a name is refused when any of its
addresses is loopback, private, link-local or otherwise not public (a fake resolver stands in for DNS)."""

from __future__ import annotations

import pytest

from pipeline.urls import address_kind, private_url_problem


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("192.168.0.9", "private"), ("172.16.5.5", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "non-public"), ("224.0.0.1", "multicast"), ("93.184.215.14", None), ("2606:4700::1", None),
])
def test_address_kinds(address, kind):
    assert address_kind(address) == kind


def test_a_host_is_refused_when_any_of_its_addresses_is_not_public():
    dns = {"public.example": ["93.184.215.14"], "mixed.example": ["93.184.215.14", "10.0.0.7"],
           "localhost": ["127.0.0.1", "::1"]}

    def resolve(host: str, port: int) -> list[str]:
        if host not in dns:
            raise OSError("name or service not known")
        return dns[host]

    assert private_url_problem("https://public.example/v.mp4", resolve) is None
    assert "mixed.example (10.0.0.7) is a private address" in private_url_problem("http://mixed.example/x", resolve)
    assert "loopback" in private_url_problem("http://localhost:8000/a.mp4", resolve)
    assert "169.254.169.254 is a link-local address" in private_url_problem("http://169.254.169.254/latest", resolve)
    assert "--allow-private-urls" in private_url_problem("http://[::1]:80/", resolve)
    assert private_url_problem("https://gone.example/v", resolve) is None  # the download says it is gone
    assert "only http(s)" in private_url_problem("file:///etc/passwd", resolve)
    assert "only http(s)" in private_url_problem("ftp://public.example/v", resolve)
