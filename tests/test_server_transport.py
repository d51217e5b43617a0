"""The stand-in server's HTTP/1.1 transport on raw sockets: bodies split across packets, chunked
bodies, two requests in one packet, ``Connection: close`` and a malformed request line."""

from __future__ import annotations

import json
import re
import socket
import time
from urllib.parse import urlparse

from smart_spark.testing import SimulatedBackend, SimulatedModel, StandInServer

BACKEND = SimulatedBackend(["Yes", "No"], {"ref": SimulatedModel(1.0)}, reference="ref")
BODY = json.dumps({"model": "ref", "messages": [{"role": "user", "content": "Is it overruling?"}]}).encode()


def _connect(server: StandInServer) -> socket.socket:
    url = urlparse(server.base_url)
    return socket.create_connection((url.hostname, url.port), timeout=5)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _statuses(received: bytes) -> list[int]:
    """Status of each response (a JSON body ends without a line break, so the next one follows it directly)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]


def test_split_chunked_and_pipelined_requests_are_answered_in_order():
    post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    plain = post + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
    chunked = (post + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 10 + BODY[:10] + b"\r\n"
               + b"%x;ext=1\r\n" % (len(BODY) - 10) + BODY[10:] + b"\r\n0\r\n\r\n")
    last = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with StandInServer(BACKEND, latency_s=0.01) as server, _connect(server) as sock:
        sock.sendall(plain[:40])  # a head split across packets
        time.sleep(0.05)
        sock.sendall(plain[40:] + chunked[:70])
        time.sleep(0.05)
        sock.sendall(chunked[70:] + last)  # the rest, and a request behind it in the same packet
        received = _read_all(sock)
    assert _statuses(received) == [200, 200, 200]
    assert received.count(b'"content": "') == 2 and b'"object": "list"' in received
    assert received.rstrip().endswith(b"}") and b"Connection: close" in received


def test_malformed_request_line_gets_400_and_close():
    with StandInServer(BACKEND) as server, _connect(server) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        received = _read_all(sock)
    assert _statuses(received) == [400] and b"Malformed request line" in received
