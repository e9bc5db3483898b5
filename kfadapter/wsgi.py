"""WSGI entry point for gunicorn: the app built from the checked environment, with the configured logging."""

import sys

from kfadapter.app import create_app
from kfadapter.core.observability import configure_logging
from kfadapter.settings import SettingsError, load

try:
    settings = load()
except SettingsError as exc:  # only when gunicorn runs without kfadapter/server/gunicorn_conf.py, which checks first
    print(f"kfadapter: configuration error: {exc}", file=sys.stderr)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of restarting workers forever
configure_logging(settings.log_format, settings.log_level)
app = create_app(settings)
