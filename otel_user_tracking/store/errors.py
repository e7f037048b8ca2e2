"""What reading or writing a store raises beyond the driver's own errors."""

from __future__ import annotations

from .sqlite.schema import SchemaError

__all__ = ["SchemaError", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """A PostgreSQL store could not be reached or read; the message names it without credentials."""
