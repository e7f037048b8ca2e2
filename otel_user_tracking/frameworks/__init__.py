"""One adapter per web framework, each putting the request core's front doors into its apps."""

from __future__ import annotations

from .registry import ADAPTERS, FrontDoors, Registration, install_adapters, requirements

__all__ = ["ADAPTERS", "FrontDoors", "Registration", "install_adapters", "requirements"]
