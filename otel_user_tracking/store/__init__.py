"""The analytics store: its backends (their schemas and migrations), the report and the dashboard.

``sqlite/`` is the embedded default (one file per machine); the report and the dashboard
read a store and never write it.
"""
