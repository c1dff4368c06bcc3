"""Persistence: the Store interface, its records and the embedded SQLite implementation."""
