"""A training-manager stand-in for the benches: answers 200 (after `delay` seconds) and records each run id."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A real local HTTP receiver of run-status notifications."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.received = delay, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.received.append(body["run_id"])
                time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/trainingjob/pipelineNotification"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def duplicates(self) -> int:
        """Notifications received more than once for the same run."""
        return len(self.received) - len(set(self.received))

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()
