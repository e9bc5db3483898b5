"""The installed package's version (one place for `kfadapter --version` and `GET /`)."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """Return kfadapter's version from the installed distribution ("unknown" when run from a bare checkout)."""
    try:
        return metadata.version("kfadapter")
    except metadata.PackageNotFoundError:
        return "unknown"
