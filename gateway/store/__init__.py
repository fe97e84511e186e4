"""Storage: the only package that talks to PostgreSQL (psycopg 3)."""

from gateway.store.migrate import MigrationReport, migrate
from gateway.store.pool import Connection, Pool, connection, probe
from gateway.store.writer import PostgresSink

__all__ = [
    "Connection",
    "MigrationReport",
    "Pool",
    "PostgresSink",
    "connection",
    "migrate",
    "probe",
]
