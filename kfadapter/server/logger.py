"""gunicorn's logger with control characters escaped in its access and error lines (a client's path, headers)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from kfadapter.core.observability import EscapeFilter


class EscapingLogger(Logger):
    """Escape control characters in every line gunicorn logs, so a request cannot forge log lines."""

    def setup(self, cfg) -> None:
        """Set gunicorn's handlers up, then escape what goes through them."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(EscapeFilter())
