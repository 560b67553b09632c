"""`python -m uvicorn ...` for the benchmark, with TCP_NODELAY on every connection, as production has it.

`uvicorn --workers N` binds the listening socket itself with `proto` 0; accepted connections inherit
it and asyncio only sets TCP_NODELAY on sockets that say IPPROTO_TCP (uvicorn issue #3149, open). Each
keep-alive request after the first then waits ~40 ms for the client's delayed ACK. Production runs one
`run.py serve` per port (asyncio binds from host and port and gets it right), so the benchmark's
stand-in for N of them gets the listener the same way: uvicorn's own bind, with its protocol said.
"""

from __future__ import annotations

import socket
import sys

import uvicorn.config
import uvicorn.main

_bind_socket = uvicorn.config.Config.bind_socket


def _bind_tcp_socket(self) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


uvicorn.config.Config.bind_socket = _bind_tcp_socket

if __name__ == "__main__":
    sys.exit(uvicorn.main.main())
