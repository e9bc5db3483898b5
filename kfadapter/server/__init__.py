"""The production HTTP server: gunicorn's configuration, the buffered gthread worker and the escaping logger."""
