"""The adapter's settings: read once from the environment (model), each checked at start-up (checks).

`checks` is the leaf (ranges, shapes, files, gunicorn's knobs, `SettingsError`); `model` builds `Settings` on it;
`load()` joins both. Nothing here imports the rest of the adapter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kfadapter.settings.checks import SettingsError, check_files
from kfadapter.settings.model import DEFAULT_ARGUMENT_MAPPING, TM_NOTIFICATION_PATH, Settings

__all__ = ["DEFAULT_ARGUMENT_MAPPING", "TM_NOTIFICATION_PATH", "Settings", "SettingsError", "load"]


def load(env: Mapping[str, str] | None = None, files: bool = True) -> Settings:
    """Read and check the adapter's settings (and, with `files`, what they name on disk)."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    if files:
        check_files(settings, env)
    return settings
