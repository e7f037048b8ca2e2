"""Apps the end-to-end framework tests serve (each copied as app.py into a temporary folder)."""
