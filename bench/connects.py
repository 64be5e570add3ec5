"""What naming connections at their start costs: `ConnectionOwners` at rising connection rates.

A client process opens short loopback TCP connections at a fixed rate to a server process;
each connection sends 5 bytes, waits for 4,200 bytes and closes. The server answers at once
(the worst case: the socket is gone within a millisecond) or after a delay like a distant
server's.
This process runs `ConnectionOwners` (the SYN socket, the one-socket sock_diag lookups and
the /proc search) and nothing else, so its CPU time is the feature's cost. The table gives,
per rate: connections started, how many were named, and CPU % of one core.
Needs root (CAP_NET_RAW). Everything runs on loopback and ends with the script.

    python bench/connects.py [--rates 10,100,500] [--seconds 5] [--latencies 0,0.03]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.sources.connect_owners import ConnectionOwners  # noqa: E402  # after sys.path

SERVER = r"""
import socket, sys, threading, time
latency = float(sys.argv[1])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(1024)
print(srv.getsockname()[1], flush=True)
def serve(c):
    c.recv(64); time.sleep(latency); c.sendall(b"x" * 4200); c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = r"""
import socket, sys, threading, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
def fetch():
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"hello")
    while s.recv(65536):
        pass
    s.close()
start, n, threads = time.monotonic(), 0, []
while time.monotonic() - start < seconds:
    t = threading.Thread(target=fetch); t.start(); threads.append(t); n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
for t in threads:
    t.join()
print(n, flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="10,100,500")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--latencies", default="0,0.03", help="server reply delays, seconds")
    args = ap.parse_args()
    print("| server answers after | connections/s | made | named | named % | CPU % of a core |")
    print("|---:|---:|---:|---:|---:|---:|")
    for latency in args.latencies.split(","):
        run(latency, [float(r) for r in args.rates.split(",")], args.seconds)


def run(latency: str, rates: list[float], seconds: float) -> None:
    """One table row per rate, against a server that answers after `latency` seconds."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, latency], stdout=subprocess.PIPE, text=True
    )
    try:
        port = server.stdout.readline().strip() if server.stdout else ""
        for rate in rates:
            owners = ConnectionOwners().start()
            time.sleep(0.2)
            before = owners.stats()
            cpu0 = time.process_time()
            wall0 = time.monotonic()
            made = subprocess.run(
                [sys.executable, "-c", CLIENT, port, str(rate), str(seconds)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            time.sleep(0.2)
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            after = owners.stats()
            owners.stop()
            named = after.attributed - before.attributed
            total = int(made)
            print(
                f"| {float(latency) * 1000:.0f} ms | {rate:,.0f} | {total:,} | {named:,} |"
                f" {100 * named / max(total, 1):.1f} | {100 * cpu / wall:.2f} |"
            )
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
