"""The embedded SQLite store: its schema and migrations, the sink that writes it, its file and its
in-flight ledger."""
