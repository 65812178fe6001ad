"""A stand-in pager: prints the notifications Alertmanager's webhooks deliver.

The generated ``alertmanager.yml`` sends pages to ``http://127.0.0.1:9095/page``
and tickets to ``http://127.0.0.1:9096/ticket`` unless the spec says otherwise
(``alerting.receivers``); this listens on both, on 127.0.0.1 only, and prints
one line per alert: receiver, status, name, SLO, summary and runbook.

    python examples/inference_server/pager.py [--page-port 9095] [--ticket-port 9096]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def describe(path: str, payload: dict[str, Any]) -> list[str]:
    """One line per alert of a webhook payload (Alertmanager's webhook format, version 4)."""
    lines = []
    for alert in payload.get("alerts", []):
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        slo = f" slo={labels['slo']}" if labels.get("slo") else ""
        lines.append(f"{time.strftime('%H:%M:%S')} {path} {alert.get('status', '?').upper():8} "
                     f"{labels.get('alertname', '?')} severity={labels.get('severity', '?')} "
                     f"service={labels.get('service', '?')}{slo}\n"
                     f"    {notes.get('summary', '')}\n    runbook: {notes.get('runbook_url', '')}")
    return lines


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            for line in describe(self.path, json.loads(body)):
                print(line, flush=True)
        except ValueError:
            print(f"{self.path}: not JSON: {body[:200]!r}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print Alertmanager webhook notifications.")
    p.add_argument("--page-port", type=int, default=9095)
    p.add_argument("--ticket-port", type=int, default=9096)
    args = p.parse_args(argv)
    servers = [ThreadingHTTPServer(("127.0.0.1", port), _Handler)
               for port in (args.page_port, args.ticket_port)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"pager listening on 127.0.0.1:{args.page_port} (pages) and :{args.ticket_port} (tickets)",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
