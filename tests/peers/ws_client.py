#!/usr/bin/env python3
"""An independent IM client for Switchboard's WebSocket API, built on the
`websockets` package: connects as a user, prints each `message` frame it
receives as one JSON line, marks it read, and exits after N messages.

usage: ws_client.py WS_URL TOKEN N
"""
import json
import sys

from websockets.sync.client import connect


def main() -> int:
    url, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with connect(f"{url}?token={token}", open_timeout=10, close_timeout=5) as ws:
        seen = 0
        while seen < count:
            frame = json.loads(ws.recv(timeout=20))
            if frame.get("type") != "message":
                continue
            print(json.dumps({"txn": frame["txn"], "from": frame["from"], "body": frame["body"]}), flush=True)
            ws.send(json.dumps({"type": "read", "txn": frame["txn"]}))
            seen += 1
        # Give the read a moment to be handled before closing politely.
        try:
            ws.recv(timeout=1)
        except TimeoutError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
