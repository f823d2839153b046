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

from websockets.sync.client import connect


def main() -> int:
    where, ca, alice, bob = sys.argv[1:5]
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(f"https://{where}/healthz", context=ctx, timeout=10) as r:
        assert r.status == 200, r.status
    with connect(f"wss://{where}/v1/ws?token={bob}", ssl=ctx, open_timeout=10) as ws:
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
