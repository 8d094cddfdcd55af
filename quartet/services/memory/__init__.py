"""The memory service: conversation turns per session and topic, on SQLite by default."""
