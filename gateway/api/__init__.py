"""The HTTP API and console: FastAPI routers over the running gateway and PostgreSQL."""

from gateway.api.app import create_app
from gateway.api.context import ApiContext

__all__ = ["ApiContext", "create_app"]
