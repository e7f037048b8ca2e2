"""The logged-in user every framework benchmark app gives its requests: what the framework
adapters read (Django's ``request.user``, Flask's ``g.user``)."""

from __future__ import annotations


class BenchUser:
    id = "user-42"
    username = "jane"
    email = "jane@example.com"
    is_authenticated = True


USER = BenchUser()
