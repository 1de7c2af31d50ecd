#!/usr/bin/env python3
"""Sends HTTP requests and prints what came back, one JSON line each:
{"status": 200, "headers": {...}, "body": "..."}.

usage: send.py URL_BASE REQUESTS_JSON
REQUESTS_JSON: [{"method": "GET", "path": "/orders", "headers": {...}}, ...]
"""

import http.client
import json
import sys
import urllib.parse

base = urllib.parse.urlsplit(sys.argv[1])
for spec in json.loads(sys.argv[2]):
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
    try:
        connection.request(spec.get("method", "GET"), spec["path"], headers=spec.get("headers", {}))
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        print(json.dumps({
            "status": response.status,
            "headers": {k.lower(): v for k, v in response.getheaders()},
            "body": body,
        }), flush=True)
    except OSError as e:
        print(json.dumps({"status": 0, "headers": {}, "body": str(e)}), flush=True)
    finally:
        connection.close()
