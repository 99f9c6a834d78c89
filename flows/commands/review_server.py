"""The `review` command's socket and messages: bind before anything is written, say where it serves."""

from __future__ import annotations

import ipaddress
import socket
import sys

from dvmset.review import QueuePolicy

LOOPBACK = ("127.0.0.1", "localhost", "::1")
BACKLOG = 2048  # uvicorn's default


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (OSError when taken or not ours to bind): connections made
    once it is announced wait in its backlog until uvicorn accepts them."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    """``host`` as written in a URL: IPv6 literals in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def public_url(host: str, port: int) -> str:
    """Where annotators reach a server bound to host:port (this machine's name for a wildcard address)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"http://{url_host(host)}:{port}"


def announce(host: str, url: str, policy: QueuePolicy) -> None:
    if host not in LOOPBACK:
        print(f"warning: serving on {host} over plain http: login tokens and the sign-in cookie cross the "
              "network unencrypted, so anyone on the path can sign in as an annotator. Serve on 127.0.0.1 "
              "behind a TLS reverse proxy (--forwarded-allow-ips) to expose it; every request still needs "
              "a token", file=sys.stderr)
    print(f"review tool on {url}/ ({policy.describe()}); annotators sign in with their login link",
          file=sys.stderr)
