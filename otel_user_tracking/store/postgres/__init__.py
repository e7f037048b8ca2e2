"""The PostgreSQL store, for a fleet: its schema, partitions and migrations, its connections, its sink."""
