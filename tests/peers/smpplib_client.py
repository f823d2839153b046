"""An independent SMPP client (PyPI's smpplib) against the SMSC simulator.

    python3 tests/peers/smpplib_client.py PORT SYSTEM_ID PASSWORD DEST TEXT

Binds as transceiver, submits TEXT (concatenated parts when long, the way
smpplib splits it) to DEST asking for receipts, waits for every receipt
(10 s at most), unbinds, and prints one JSON line:
{"bind": status, "submits": [{"status", "message_id"}], "receipts": [text]}.
It checks the simulator our tests rely on against a client we did not write.
"""

import json
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.gsm

port, system_id, password, dest, text = sys.argv[1:6]
out = {"bind": None, "submits": [], "receipts": []}

client = smpplib.client.Client("127.0.0.1", int(port), timeout=5)


def on_sent(pdu):
    out["submits"].append({"status": pdu.status, "message_id": pdu.message_id.decode()})


def on_message(pdu):
    if pdu.esm_class & 0x3C == 0x04:  # an SMSC delivery receipt
        out["receipts"].append(pdu.short_message.decode("ascii", "replace"))


client.set_message_sent_handler(on_sent)
client.set_message_received_handler(on_message)
client.connect()
try:
    resp = client.bind_transceiver(system_id=system_id, password=password)
    out["bind"] = resp.status
    parts, coding, esm_class = smpplib.gsm.make_parts(text)
    for part in parts:
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="smpplib",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            destination_addr=dest,
            short_message=part,
            data_coding=coding,
            esm_class=esm_class,
            registered_delivery=True,
        )
    deadline = time.time() + 10
    while len(out["receipts"]) < len(parts) and time.time() < deadline:
        client.read_once()
    client.unbind()
except smpplib.exceptions.PDUError as e:
    out["bind"] = e.args[1] if len(e.args) > 1 else str(e)
finally:
    client.disconnect()
print(json.dumps(out))
