"""MkDocs hooks: generated parts of the docs pages (``mkdocs.yml`` lists this file)."""

from __future__ import annotations
