"""The router service: configured agents that answer through the engine, with memory."""
