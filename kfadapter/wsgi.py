"""WSGI entry point for gunicorn: the app built from the environment."""
from kfadapter.app import create_app

app = create_app()
