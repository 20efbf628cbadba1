#!/usr/bin/env python3
"""The server's hostile table of docs/RELIABILITY.md (issue 35), measured
against the real `serve` binary: pages that stop reading, slowloris and
idle connections under a 1,024 descriptor limit, an iCCP bomb, native
replies of a 4096 x 4096 photo, a foreign Origin. Standard library only.

    cargo build --release -p ca-serve --example serve
    python3 docs/scripts/serve_hostile.py [--binary target/release/examples/serve]

Peak memory is the server's VmHWM, reset before each case through
/proc/PID/clear_refs (Linux).
"""

import argparse
import base64
import concurrent.futures
import json
import os
import socket
import struct
import subprocess
import threading
import time
import zlib

PORT = 18093
PHOTO = "fixtures/pets-synthetic/images/synth-cat-001.jpg"


def png(width, height, rgb, extra_chunks=b""):
    """A flat RGB PNG, optionally with chunks after IHDR."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" + bytes(rgb) * width
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra_chunks
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def iccp_bomb(inflated_mib):
    z = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    profile = b"".join(z.compress(zeros) for _ in range(inflated_mib)) + z.flush()
    data = b"bomb\0\0" + profile
    body = b"iCCP" + data
    chunk = struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    return png(64, 64, (120, 80, 40), chunk)


def multipart(image):
    b = "cellseg-hostile"
    head = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return f"multipart/form-data; boundary={b}", head + image + f"\r\n--{b}--\r\n".encode()


def http(method, path, body=b"", headers=None, timeout=60):
    """(status, headers, body) of one request on a fresh connection."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{PORT}", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    data = b""
    while True:
        part = s.recv(1 << 16)
        if not part:
            break
        data += part
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, head.decode(errors="replace"), rest


def segment(image, query="", headers=None):
    ctype, body = multipart(image)
    return http("POST", "/api/segment" + query, body, dict(headers or {}, **{"Content-Type": ctype}))


def status():
    return json.loads(http("GET", "/api/status")[2])


def ws_open(rcvbuf=None, origin=None):
    """A raw WebSocket to /ws: (socket, status line of the handshake)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", PORT))
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        req += f"Origin: {origin}\r\n"
    s.sendall((req + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head.split(b"\r\n")[0].decode()


def ws_send_binary(s, payload):
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x82]) + (bytes([0x80 | 127]) + struct.pack(">Q", n) if n > 65535
                              else bytes([0x80 | 126]) + struct.pack(">H", n))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(header + mask + masked)


class Server:
    def __init__(self, binary, *flags):
        cmd = f"ulimit -n 1024; exec {binary} --port {PORT} --log warn " + " ".join(flags)
        self.proc = subprocess.Popen(["bash", "-c", cmd], stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                status()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def reset_peak(self):
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def peak_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def silent_pages(binary):
    server = Server(binary)
    photo = open(PHOTO, "rb").read()
    pages = []
    for _ in range(4):
        s, line = ws_open(rcvbuf=4096)
        ws_send_binary(s, b"P" + photo)
        pages.append(s)
    start, cpu0 = time.time(), server.cpu_s()
    live = status()["live_colonies"]
    while status()["live_colonies"] > 0 and time.time() - start < 120:
        time.sleep(0.25)
    took = time.time() - start
    cpu = server.cpu_s() - cpu0
    fresh, line = ws_open()
    server.stop()
    print(f"silent pages: {live} live, all freed in {took:.1f} s, server CPU {cpu:.1f} s "
          f"meanwhile ({100 * cpu / took:.0f}% of a core); then a new page: {line}")


def slowloris(binary, n=200):
    server = Server(binary)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(b"GET /api/status HTTP/1.1\r\n")
        socks.append(s)
    start = time.time()
    closed = {}
    while len(closed) < n and time.time() - start < 60:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.sendall(b"X")
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed[i] = time.time() - start
                except BlockingIOError:
                    pass
                s.setblocking(True)
            except OSError:
                closed[i] = time.time() - start
        time.sleep(1.0)
    server.stop()
    worst = max(closed.values()) if closed else float("nan")
    print(f"slowloris: {len(closed)} of {n} closed by the server, the last after {worst:.1f} s")


def idle_flood(binary, n=1100):
    server = Server(binary)
    socks, refused = [], 0
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", PORT), timeout=5))
        except OSError:
            refused += 1
    time.sleep(0.5)
    t = time.time()
    try:
        code = http("GET", "/api/status", timeout=30)[0]
    except OSError as e:
        code = f"error {e}"
    first = time.time() - t
    time.sleep(11)
    t = time.time()
    later = http("GET", "/api/status", timeout=30)[0]
    second = time.time() - t
    server.stop()
    print(f"idle flood: {len(socks)} connections open ({refused} refused by the kernel); "
          f"/api/status -> {code} in {first * 1e3:.0f} ms, after the header timeout -> {later} "
          f"in {second * 1e3:.0f} ms")


def memory(binary):
    server = Server(binary)
    photo = open(PHOTO, "rb").read()
    segment(photo)  # warm up: the model loaded, the pool filled
    base = server.peak_mib()
    bomb = iccp_bomb(1024)
    server.reset_peak()
    code = segment(bomb)[0]
    print(f"memory: idle after warm-up {base:.0f} MiB")
    print(f"iCCP bomb ({len(bomb)} bytes, 1 GiB inflated): {code}, peak {server.peak_mib():.0f} MiB")
    big = png(4096, 4096, (90, 120, 30))
    server.reset_peak()
    code, _, body = segment(big, "?format=json&size=native")
    print(f"4096x4096 ({len(big)} bytes) format=json&size=native: {code}, "
          f"peak {server.peak_mib():.0f} MiB, {body[:90]!r}")
    server.reset_peak()
    code, _, body = segment(big, "?size=native")
    print(f"4096x4096 size=native PNG: {code}, {len(body)} bytes, peak {server.peak_mib():.0f} MiB")
    server.reset_peak()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: segment(big, "?size=native")[0], range(8)))
    print(f"8 parallel 4096x4096 size=native PNG: {codes}, peak {server.peak_mib():.0f} MiB")
    server.reset_peak()
    pages = []
    for _ in range(4):
        s, _ = ws_open()
        ws_send_binary(s, b"P" + bomb)
        pages.append(s)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: [segment(bomb)[0] for _ in range(3)], range(4)))
    print(f"4 pages + 4 API loops of the bomb: {codes}, peak {server.peak_mib():.0f} MiB")
    server.stop()


def origins(binary):
    server = Server(binary)
    _, line = ws_open(origin="http://evil.example")
    photo = open(PHOTO, "rb").read()
    code, _, body = segment(photo, headers={"Origin": "http://evil.example"})
    own = segment(photo, headers={"Origin": f"http://127.0.0.1:{PORT}"})[0]
    server.stop()
    print(f"foreign Origin: /ws -> {line}; /api/segment -> {code} {body[:100]!r}; own origin -> {own}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/examples/serve")
    args = parser.parse_args()
    for case in (silent_pages, slowloris, idle_flood, memory, origins):
        case(args.binary)


if __name__ == "__main__":
    main()
