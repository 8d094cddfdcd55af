"""The HTTP gateway: the OpenAI API (FastAPI, SSE) in front of the engine's gRPC."""
