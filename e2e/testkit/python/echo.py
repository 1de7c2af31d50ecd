#!/usr/bin/env python3
"""An HTTP upstream that answers every request with the headers it received,
as a JSON object (lower-case names, and ":path" for the path as received),
so a test sees what reached it.

usage: echo.py PORT   (prints "ready" once listening on 127.0.0.1:PORT)
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        received = {k.lower(): v for k, v in self.headers.items()}
        received[":path"] = self.path
        body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-upstream", "echo")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo)
print("ready", flush=True)
server.serve_forever()
