"""Scheduling: the scheduler, the KV block manager, per-request and per-choice sequences."""
