"""What the middleware derives from one ``Config``, once per configuration change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..config import Config
from .scrubbing import QueryScrubber
from .server_span import ServerSpanMaker
from .visitor import VisitorIdentifier


@dataclass(frozen=True)
class Prepared:
    """Everything a request needs that depends only on the configuration.

    Args:
        config: The app's configuration (its options over ``configure()`` and the environment).
        maker: Starts and ends the SERVER spans, with their HTTP metrics.
        asgi_middleware: The contrib ASGI middleware around the app, for ``internal_spans=True``.
        visitors: The cookieless visitor ids for the configured ``site``.
        scrubber: The query scrubber for the configured sensitive keys.
    """

    config: Config
    maker: ServerSpanMaker
    asgi_middleware: Any
    visitors: VisitorIdentifier
    scrubber: QueryScrubber


class PreparedRequest(Protocol):
    """What reading a request's facts under the policy needs, whichever front door prepared it."""

    @property
    def config(self) -> Config: ...

    @property
    def visitors(self) -> VisitorIdentifier: ...

    @property
    def scrubber(self) -> QueryScrubber: ...
