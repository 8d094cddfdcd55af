"""The engine's gRPC face: the servicer, proto <-> domain conversion, request checks, events and sinks."""
