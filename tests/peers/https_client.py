#!/usr/bin/env python3
"""Switchboard over TLS, from Python's own TLS stack: checks the node's
certificate against CA_FILE, reads /healthz over HTTPS, opens bob's
WebSocket over wss://, sends him a message as alice over HTTPS, and prints
the body of the message frame bob's socket receives.

usage: https_client.py HOST:PORT CA_FILE ALICE_TOKEN BOB_TOKEN
"""
import json
import ssl
import sys
import urllib.request

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def open_ws(url, ctx):
    """The WebSocket, trying once more after a 408: the server closed a
    connection whose request it did not get in time (a loaded machine), and
    HTTP lets the client repeat the request (RFC 9110, 15.5.9)."""
    for attempt in range(2):
        try:
            return connect(url, ssl=ctx, open_timeout=10)
        except InvalidStatus as e:
            if e.response.status_code != 408 or attempt == 1:
                raise
            print("408 on the WebSocket handshake; trying again", file=sys.stderr)


def main() -> int:
    where, ca, alice, bob = sys.argv[1:5]
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(f"https://{where}/healthz", context=ctx, timeout=10) as r:
        assert r.status == 200, r.status
    with open_ws(f"wss://{where}/v1/ws?token={bob}", ctx) as ws:
        req = urllib.request.Request(
            f"https://{where}/v1/messages",
            data=json.dumps({"to": "bob", "body": "over TLS"}).encode(),
            headers={"Authorization": f"Bearer {alice}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert r.status == 202, r.status
        while True:
            frame = json.loads(ws.recv(timeout=20))
            if frame.get("type") == "message":
                print(frame["body"], flush=True)
                return 0


if __name__ == "__main__":
    sys.exit(main())
