"""Storage: the only package that talks to PostgreSQL (psycopg 3)."""

from gateway.store.migrate import MigrationReport, migrate
from gateway.store.pool import Connection, Pool, connection, probe
from gateway.store.writer import BatchWriter

__all__ = [
    "BatchWriter",
    "Connection",
    "MigrationReport",
    "Pool",
    "connection",
    "migrate",
    "probe",
]
