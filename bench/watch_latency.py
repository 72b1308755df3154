"""Watch latency: from a line appended to a followed file to its finding at a webhook.

``python -m bench.watch_latency [--findings 200]`` starts ``fleetwatch watch`` on a
folder, with its webhook pointed at an HTTP receiver on 127.0.0.1 (in this process),
then appends one real-format kernel record at a time from a new node each time, so
each is a new finding and one POST. A record's latency is from just before its write
to the arrival of its finding's POST; the report gives p50, p99 and the worst. The
goal: p99 at most 1 s.

``--record xid79`` (the default) is one line. ``--record fatal-aer`` is a four-line
fatal AER report, which the reader holds for lines that may continue it: with a gap
longer than ``quiet_s`` (0.2 s) between reports, each is read only once its file has
been quiet, which is what this measures (``--findings 20 --gap 1``).

Everything real: the file, the watch process (polling every 0.1 s, committing to its
SQLite store before it announces), the HTTP delivery with its HMAC signature.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET = "latency-bench"  # noqa: S105  # a throwaway signing key for this run


RECORDS = {
    "xid79": "{stamp} {node} kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid={i}, name=python, "
    "GPU has fallen off the bus.\n",
    "fatal-aer": "{stamp} {node} kernel: pcieport 0000:3a:00.0: AER: Uncorrected (Fatal) "
    "error received: 0000:3b:00.0\n"
    "{stamp} {node} kernel: nvidia 0000:3b:00.0: PCIe Bus Error: severity=Uncorrected "
    "(Fatal), type=Transaction Layer, (Receiver ID)\n"
    "{stamp} {node} kernel: nvidia 0000:3b:00.0:   device [10de:2330] error "
    "status/mask=00000020/00000000\n"
    "{stamp} {node} kernel: nvidia 0000:3b:00.0:    [ 5] SDES                   (First)\n",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between records")
    parser.add_argument("--record", choices=("xid79", "fatal-aer"), default="xid79")
    args = parser.parse_args()

    arrived: dict[str, float] = {}
    got_all = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body.get("transition") == "new":
                arrived.setdefault(body["node"], time.time())
                if len(arrived) >= args.findings:
                    got_all.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="fleetwatch-latency-") as tmp:
        log = Path(tmp) / "logs" / "kern.log"
        log.parent.mkdir()
        log.write_text("")
        watch = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetwatch",
                "watch",
                "--quiet",
                "--follow",
                str(log),
                "--store",
                str(Path(tmp) / "w.db"),
                "--webhook",
                f"http://127.0.0.1:{server.server_port}/hook",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "FLEETWATCH_WEBHOOK_SECRET": SECRET},
        )
        assert watch.stderr is not None
        watch.stderr.readline()  # the banner: it is watching
        time.sleep(0.5)
        written: dict[str, float] = {}
        with log.open("a") as out:
            for i in range(args.findings):
                node = f"gpu-node-{i:04d}"
                stamp = datetime.now(UTC).isoformat()
                written[node] = time.time()
                out.write(RECORDS[args.record].format(stamp=stamp, node=node, i=i))
                out.flush()
                time.sleep(args.gap)
        got_all.wait(timeout=30)
        watch.terminate()
        watch.wait(timeout=30)
    server.shutdown()
    latencies = sorted(arrived[n] - written[n] for n in written if n in arrived)
    missing = len(written) - len(latencies)
    if not latencies:
        print("watch latency: no finding arrived")
        return 1
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"watch latency over {len(latencies)} {args.record} findings (record appended -> "
        "webhook POST): "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; {missing} missing"
    )
    return 0 if missing == 0 and p99 <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
