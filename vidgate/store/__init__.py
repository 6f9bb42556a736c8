"""Persistence: one module per aggregate over SQLAlchemy Core (async), SQLite or PostgreSQL."""
