"""The one way a Quartet gRPC server is built and run.

``build_server`` gives every service health checking, server reflection and
the error interceptor; ``serve`` runs it until SIGTERM or SIGINT and then
drains in-flight calls for a grace period.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from quartet.services.common.errors import QuartetError

# The servers take the clients' message limits, and set the field trailer the clients read.
from quartet.services.common.rpc import CHANNEL_OPTIONS, FIELD_METADATA_KEY

log = logging.getLogger(__name__)


async def _abort_for(error: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(error, QuartetError):
        log.info("request failed", extra={"method": method, "code": error.grpc_code.name, "error": error.message})
        metadata = ((FIELD_METADATA_KEY, error.field),) if error.field else ()
        await context.abort(error.grpc_code, error.message, trailing_metadata=metadata)
    log.exception("unexpected error", extra={"method": method})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(error).__name__}; see the server log")


def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """Wrap one method handler so typed errors become precise status codes."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary_unary(request, context):
            try:
                return await inner(request, context)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as error:  # noqa: BLE001 - mapped once, here
                await _abort_for(error, context, method)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def unary_stream(request, context):
            try:
                result = inner_stream(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    await result
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as error:  # noqa: BLE001
                await _abort_for(error, context, method)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps QuartetError subclasses to their status codes; anything else is INTERNAL and logged."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap(handler, handler_call_details.method)


@dataclass
class GrpcServer:
    """A built, not yet started server."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def start(self) -> None:
        await self.server.start()
        for name in (*self.service_names, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def build_server(
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
) -> GrpcServer:
    """Create a server bound to ``address`` (port 0 picks a free one).

    ``register`` adds the service's servicers; ``service_names`` are their
    full names, published through health and reflection.
    """
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=CHANNEL_OPTIONS)
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(service_names)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}: is the port in use?")
    return GrpcServer(server=server, port=port, health=health_servicer, service_names=names)


async def serve(built: GrpcServer, *, name: str, grace: float = 5.0, on_stop: Callable[[], object] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then mark NOT_SERVING and drain for ``grace`` seconds."""
    # Handlers first: a SIGTERM that lands while the server starts still drains gracefully.
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    await built.start()
    log.info("serving", extra={"service_name": name, "port": built.port})
    await stop_event.wait()
    log.info("shutting down", extra={"service_name": name, "grace_seconds": grace})
    await built.stop(grace)
    if on_stop is not None:
        result = on_stop()
        if inspect.isawaitable(result):
            await result
    log.info("stopped", extra={"service_name": name})
