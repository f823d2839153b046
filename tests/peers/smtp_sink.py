#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) standing in for Switchboard's outbound relay.

usage: smtp_sink.py PORT OUTDIR [--tls CERT KEY] [ADDRESS=REPLY ...]

Every accepted message is written to OUTDIR/<n>.eml (its envelope sender to
OUTDIR/<n>.from, "tls" or "plain" to OUTDIR/<n>.tls); every RCPT is logged to
OUTDIR/rcpt.log. ADDRESS=REPLY makes RCPT TO:<ADDRESS> answer REPLY instead,
e.g. carol@example.org='550 5.1.1 No such mailbox' or '451 4.3.0 Try later'.
With --tls the sink offers STARTTLS with that certificate and requires it
before MAIL (530 otherwise). Prints "ready" once it listens; runs until
killed.
"""
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, outdir, rules):
        self.outdir = outdir
        self.rules = rules
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(os.path.join(self.outdir, "rcpt.log"), "a") as f:
            f.write(address + "\n")
        reply = self.rules.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        path = os.path.join(self.outdir, f"{n}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode())
        with open(os.path.join(self.outdir, f"{n}.from"), "w") as f:
            f.write(envelope.mail_from or "")
        with open(os.path.join(self.outdir, f"{n}.tls"), "w") as f:
            f.write("tls" if session.ssl else "plain")
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[3:]
    tls = {}
    if args[:1] == ["--tls"]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args[1], args[2])
        tls = {"tls_context": context, "require_starttls": True}
        args = args[3:]
    rules = {}
    for arg in args:
        addr, reply = arg.split("=", 1)
        rules[addr.lower()] = reply
    controller = Controller(Sink(outdir, rules), hostname="127.0.0.1", port=port, **tls)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
