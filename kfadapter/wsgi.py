"""WSGI entry point for gunicorn: the app built from the environment, with the configured logging."""
from kfadapter.app import create_app
from kfadapter.observability import configure_logging
from kfadapter.settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_format, settings.log_level)
app = create_app(settings)
