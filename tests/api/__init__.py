"""Tests of the HTTP API against a running gateway, its uvicorn server and a real PostgreSQL."""
