"""Pydantic models of the OpenAI wire format: requests in, responses and errors out."""
