"""Plumbing every Quartet service shares: typed errors, logs, settings, gRPC servers."""
