#!/usr/bin/env python3
"""Switchboard side by side with what a user would pick instead, on this
machine, in one run: NATS JetStream (async publish with ack, file storage,
as shipped and with `sync_interval: always`),
Mosquitto (MQTT QoS 1, persistence on), RabbitMQ (persistent messages,
publisher confirms) — and Switchboard's own load generator.

    benches/peers/run [MESSAGES] [INFLIGHT]        # installs, then runs this

Each server runs on 127.0.0.1 on a free port with a temp dir and is stopped
by its PID at the end. Every client sends MESSAGES messages of 256 bytes with
INFLIGHT unacknowledged at once and waits for every acknowledgement; the
latency is publish → acknowledgement. Switchboard's rows come from
`switchboard bench --json` (submit → delivered into the recipient's durable
inbox: more work per message than an acknowledged publish). Prints a
Markdown table. Bounded: every client gives up after 120 s.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
W = int(sys.argv[2]) if len(sys.argv) > 2 else 256
SIZE = 256
PAYLOAD = b"x" * SIZE
LIMIT = 120


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def summary(name, what, latencies, elapsed):
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    return {
        "system": name,
        "measures": what,
        "messages": len(latencies),
        "msgs_per_s": len(latencies) / elapsed if elapsed else 0,
        "p50": pct(0.5),
        "p99": pct(0.99),
    }


# ---- NATS JetStream -------------------------------------------------------

def nats_client(port):
    """Acked JetStream publishes over the raw NATS protocol (one socket,
    pipelined; replies to _A.<i>): the client costs a few µs a message, so
    the server is what is measured."""
    s = socket.create_connection(("127.0.0.1", port), timeout=LIMIT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":false}\r\nSUB _A.* 1\r\n')
    body = json.dumps({"name": "BENCH", "subjects": ["bench"], "storage": "file"}).encode()
    s.sendall(b"PUB $JS.API.STREAM.CREATE.BENCH _A.c %d\r\n%s\r\nPING\r\n" % (len(body), body))
    while True:
        line = f.readline()
        if line.startswith(b"MSG"):
            f.read(int(line.split()[-1]) + 2)
            break
    sent = [0.0] * N
    lat = []
    nxt = 0
    inflight = 0
    hdr = b"\r\n" + PAYLOAD + b"\r\n"
    t0 = time.perf_counter()
    deadline = t0 + LIMIT
    while len(lat) < N and time.perf_counter() < deadline:
        if nxt < N and inflight < W:
            k = min(N - nxt, W - inflight, 256)
            now = time.perf_counter()
            buf = bytearray()
            for i in range(nxt, nxt + k):
                sent[i] = now
                buf += b"PUB bench _A.%d %d" % (i, len(PAYLOAD)) + hdr
            s.sendall(buf)
            nxt += k
            inflight += k
        line = f.readline()
        if line.startswith(b"MSG"):
            parts = line.split()
            f.read(int(parts[-1]) + 2)
            i = int(parts[1][3:])
            lat.append(time.perf_counter() - sent[i])
            inflight -= 1
        elif line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
    elapsed = time.perf_counter() - t0
    s.close()
    return lat, elapsed


def nats_version():
    out = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout
    return out.strip().split()[-1].lstrip("v")


def nats_run(sync_always):
    """JetStream as shipped (it acknowledges once the write is in the page
    cache and fsyncs every 2 minutes), or with `sync_interval: always` (an
    fsync before every acknowledgement: what Switchboard's answers wait for)."""
    port = free_port()
    d = tempfile.mkdtemp()
    conf = os.path.join(d, "nats.conf")
    with open(conf, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{d}/js\"\n"
                + ("  sync_interval: always\n" if sync_always else "") + "}\n")
    proc = subprocess.Popen(["nats-server", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        lat, elapsed = nats_client(port)
        mode = "sync_interval: always" if sync_always else "default sync"
        return summary(f"NATS JetStream {nats_version()} (file, {mode})", "async publish → ack", lat, elapsed)
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


# ---- Mosquitto -------------------------------------------------------------

def mosquitto_run():
    import paho.mqtt.client as mqtt

    port = free_port()
    d = tempfile.mkdtemp()
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {d}/\nmax_inflight_messages {W}\nmax_queued_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        # No lock of ours around paho's calls (its network thread holds its
        # own lock while it calls back): dict operations are atomic.
        sent, early, lat = {}, {}, []
        done = threading.Event()

        def on_publish(client, userdata, mid, reason_code=None, properties=None):
            now = time.perf_counter()
            t0 = sent.pop(mid, None)
            if t0 is None:
                early[mid] = now
            else:
                lat.append(now - t0)
            if len(lat) >= N:
                done.set()

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench")
        c.max_inflight_messages_set(W)
        c.max_queued_messages_set(0)
        c.on_publish = on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        t0 = time.perf_counter()
        for _ in range(N):
            # paho queues past the in-flight window; time from the call.
            t = time.perf_counter()
            mid = c.publish("bench", PAYLOAD, qos=1).mid
            sent[mid] = t
            # The acknowledgement may have come before `sent` had the mid.
            at = early.pop(mid, None)
            if at is not None and sent.pop(mid, None) is not None:
                lat.append(at - t)
                if len(lat) >= N:
                    done.set()
        done.wait(LIMIT)
        elapsed = time.perf_counter() - t0
        c.loop_stop()
        c.disconnect()
        return summary("Mosquitto 2.0 (QoS 1, persistence)", "publish → PUBACK", lat, elapsed)
    finally:
        stop(proc)
        shutil.rmtree(d, ignore_errors=True)


# ---- RabbitMQ --------------------------------------------------------------

async def rabbit_client(port):
    import aio_pika

    conn = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=30)
    ch = await conn.channel(publisher_confirms=True)
    q = await ch.declare_queue("bench", durable=True)
    sem = asyncio.Semaphore(W)
    lat = []

    async def one():
        async with sem:
            t0 = time.perf_counter()
            await ch.default_exchange.publish(
                aio_pika.Message(PAYLOAD, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=q.name,
            )
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(N))), LIMIT)
    elapsed = time.perf_counter() - t0
    await conn.close()
    return lat, elapsed


def rabbit_run():
    port = free_port()
    d = tempfile.mkdtemp()
    env = dict(os.environ,
               RABBITMQ_NODE_PORT=str(port),
               RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
               RABBITMQ_NODENAME=f"bench{port}@localhost",
               RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"),
               RABBITMQ_LOG_BASE=os.path.join(d, "log"),
               RABBITMQ_DIST_PORT=str(free_port()),
               HOME=d)
    proc = subprocess.Popen(["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=90)
        lat, elapsed = asyncio.run(rabbit_client(port))
        return summary("RabbitMQ 3.10 (persistent, publisher confirms)", "publish → confirm", lat, elapsed)
    finally:
        stop(proc)
        subprocess.run(["pkill", "-f", f"bench{port}@localhost"], check=False)
        # Erlang's port mapper daemon, which the server started.
        subprocess.run(["epmd", "-kill"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


# ---- Switchboard -----------------------------------------------------------

def switchboard_run(target, node_env=None):
    exe = os.path.join(ROOT, "target/release/switchboard")
    args = [exe, "bench", "--target", target, "--messages", str(N), "--inflight", str(W), "--json"]
    node = None
    d = None
    if target != "inproc":
        d = tempfile.mkdtemp()
        http, miap = free_port(), free_port()
        env = dict(os.environ, SWITCHBOARD_DATA__DIR=d, SWITCHBOARD_HTTP__LISTEN=f"127.0.0.1:{http}",
                   SWITCHBOARD_MIAP__LISTEN=f"127.0.0.1:{miap}", SWITCHBOARD_LOG__LEVEL="warn")
        node = subprocess.Popen([exe, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(http)
        args += ["--url", f"http://127.0.0.1:{http}", "--connect", f"127.0.0.1:{miap}",
                 "--admin-token", open(os.path.join(d, "admin.token")).read().strip()]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=LIMIT + 30)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        what = {"inproc": "submit → delivered, in process", "tcp": "submit → delivered, remote gateway over MIAP/TCP",
                "http": "POST → delivered", "ws": "send → delivered receipt"}[target]
        return {"system": f"Switchboard ({target})", "measures": what, "messages": r["delivered"],
                "msgs_per_s": r["msgs_per_s"], "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"]}
    finally:
        stop(node)
        if d:
            shutil.rmtree(d, ignore_errors=True)


def main():
    rows = []
    for name, run in [("switchboard-inproc", lambda: switchboard_run("inproc")),
                      ("switchboard-tcp", lambda: switchboard_run("tcp")),
                      ("switchboard-http", lambda: switchboard_run("http")),
                      ("nats", lambda: nats_run(False)),
                      ("nats-sync-always", lambda: nats_run(True)), ("mosquitto", mosquitto_run), ("rabbitmq", rabbit_run)]:
        try:
            rows.append(run())
        except Exception as e:  # one failing peer does not hide the others
            rows.append({"system": name, "measures": f"failed: {e}", "messages": 0, "msgs_per_s": 0,
                         "p50": float("nan"), "p99": float("nan")})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{N} messages of {SIZE} B, {W} in flight, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n")
    print("| system | measures | msgs/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['measures']} | {r['msgs_per_s']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} |")


if __name__ == "__main__":
    main()
