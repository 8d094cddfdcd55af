"""Ask a service whether it serves: gRPC health (grpc.health.v1) or an HTTP URL.

Used by the launcher to start services in order, and by compose health checks:
``python -m quartet.services.common.health_probe grpc 127.0.0.1:50051`` or
``python -m quartet.services.common.health_probe http http://127.0.0.1:8000/healthz``;
exit status 0 means serving.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_status(address: str, *, service: str = "", timeout: float = 1.0) -> str:
    """The health status name (SERVING, NOT_SERVING, ...) or UNREACHABLE."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return "UNREACHABLE" if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def http_status(url: str, *, timeout: float = 2.0) -> str:
    """SERVING when the URL answers 200, otherwise what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return "SERVING" if reply.status == 200 else f"HTTP {reply.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError):
        return "UNREACHABLE"


def wait_until_serving(
    probe: Callable[[], str], *, timeout: float, alive: Callable[[], bool] = lambda: True, interval: float = 0.25
) -> str:
    """Poll ``probe`` until SERVING, the deadline, or ``alive()`` turns false; returns the last status."""
    deadline = time.monotonic() + timeout
    status = probe()
    while status != "SERVING" and time.monotonic() < deadline and alive():
        time.sleep(interval)
        status = probe()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["grpc", "http"])
    parser.add_argument("target", help="host:port for grpc, a URL for http")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    status = grpc_status(args.target, timeout=args.timeout) if args.kind == "grpc" else http_status(args.target, timeout=args.timeout)
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
