"""Which stored events a report or dashboard reads: a time window, and optionally one service.

Events carry their Resource's ``service.name`` and ``deployment.environment`` (``service_name``,
``deployment_environment``), so services writing one store can be read apart: every query
of the report and the dashboard adds ``Scope.sql`` to its conditions and ``Scope.params`` to
its parameters (portable SQL, ``?`` parameters), and the pageview indexes hold both columns,
so a filtered report reads no more rows than the unfiltered one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Scope:
    """A window start (integer microseconds, UTC) and the service and environment to keep.

    Args:
        since_us: Events at or after this time.
        service: Only events of this ``service.name`` (None: every service).
        environment: Only events of this deployment environment (None: every one).
    """

    since_us: int
    service: Optional[str] = None
    environment: Optional[str] = None

    @property
    def filters(self) -> str:
        """The service and environment conditions alone (`` AND ...`` each), for a query with
        its own time bounds."""
        return self.filters_on("")

    def filters_on(self, table: str) -> str:
        """``filters`` with the columns named by ``table`` (for a query of several tables)."""
        prefix = f"{table}." if table else ""
        return (f" AND {prefix}service_name = ?" if self.service is not None else "") + (
            f" AND {prefix}deployment_environment = ?" if self.environment is not None else ""
        )

    @property
    def filter_params(self) -> tuple[str, ...]:
        """The parameters of ``filters``."""
        return tuple(value for value in (self.service, self.environment) if value is not None)

    @property
    def sql(self) -> str:
        """``ts_us >= ?`` and the filters."""
        return "ts_us >= ?" + self.filters

    @property
    def params(self) -> tuple[object, ...]:
        """The parameters of ``sql``."""
        return (self.since_us, *self.filter_params)

    def describe(self) -> str:
        """The filter as the report names it ("" when there is none)."""
        parts = [f"service {self.service}" if self.service is not None else ""]
        parts.append(f"environment {self.environment}" if self.environment is not None else "")
        return ", ".join(part for part in parts if part)


def as_scope(since: object) -> Scope:
    """A scope, or the unfiltered scope from a time in microseconds."""
    return since if isinstance(since, Scope) else Scope(int(since))  # type: ignore[call-overload]
