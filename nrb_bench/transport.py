"""``nrb bench transport``: what moving a G-buffer set to the renderer and the image back costs, per transport.

A realistic 1080p G-buffer set is tens of MB, so copies are the whole cost; every number is therefore put next to
one plain ``memcpy`` of the same bytes (G-buffers in + frame out) measured in the same run.

* Set: ``hudless_color`` rgba8, ``depth`` r32f, ``motion_vectors`` rg16f, ``normals`` rgba16f, ``albedo`` rgba8,
  ``roughness_metallic`` rg8, ``material_id`` r16u (28 B/pixel) from the procedural scene (``bridge.scene``);
  an rgba8 image comes back. At 960x540 and 1920x1080.
* Server: the real one (``nrb serve --renderer passthrough``) in its own process (in-process for ``inproc``).
* Modes: ``inproc`` (Python only), ``ipc``, ``tcp`` (loopback) and ``shm`` (shared-memory slots, ZeroMQ over ipc
  carrying only headers), each with the C++ client (``bridge._native.Client``, libnrb) and with a plain Python
  client (pyzmq, zero-copy sends); plus the C++ client over tcp with lz4 / zstd.
* A round trip starts when the engine begins writing its G-buffers for the transport (into a shared-memory slot,
  into libnrb's staging memory, or into the arrays pyzmq sends) and ends when the rendered image is in the engine's
  hands. Frames go one at a time (one in flight), so this is latency, not pipelined throughput.
* ``notify_ms``: round trip minus the engine's write minus the server's own time (its ``timing.total_ms``): what
  the messaging itself costs.
* Bytes per frame: the set above, the compact set an engine would really send (``normals_oct`` rg16f, ``depth``
  r16f), each raw and with lz4 / zstd (level 1) on this scene.

Writes ``transport.json`` and ``transport.md`` into the output directory.
"""

from __future__ import annotations

import json
import mmap
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nrb_bench.machine import cpu_name, free_port

SIZES = ((960, 540), (1920, 1080))
STANDARD = (("hudless_color", "rgba8"), ("depth", "r32f"), ("motion_vectors", "rg16f"), ("normals", "rgba16f"),
            ("albedo", "rgba8"), ("roughness_metallic", "rg8"), ("material_id", "r16u"))
COMPACT = (("hudless_color", "rgba8"), ("depth", "r16f"), ("motion_vectors", "rg16f"), ("normals_oct", "rg16f"),
           ("albedo", "rgba8"), ("roughness_metallic", "rg8"), ("material_id", "r16u"))
OUTPUT_FORMAT = "rgba8"
DEADLINE_MS = 10_000.0


# ------------------------------------------------------------------------------------------------ content
def _octahedral(n: np.ndarray) -> np.ndarray:
    """Unit normals (..., 3) -> octahedral encoding (..., 2) in [-1, 1]."""
    n = n / np.maximum(np.abs(n).sum(-1, keepdims=True), 1e-9)
    xy = n[..., :2].copy()
    neg = n[..., 2] < 0
    sx = np.where(xy[..., 0] >= 0, 1.0, -1.0)
    sy = np.where(xy[..., 1] >= 0, 1.0, -1.0)
    fx = (1 - np.abs(xy[..., 1])) * sx
    fy = (1 - np.abs(xy[..., 0])) * sy
    xy[..., 0] = np.where(neg, fx, xy[..., 0])
    xy[..., 1] = np.where(neg, fy, xy[..., 1])
    return xy


def gbuffers(width: int, height: int, compact: bool = False) -> dict[str, np.ndarray]:
    """The benchmark's G-buffer set for the procedural scene, as the arrays an engine would hand over."""
    from bridge.scene import SyntheticScene

    g, _ = SyntheticScene(width, height, animate=False).gbuffers(0.0)
    rng = np.random.default_rng(1)
    normals = g["normals"][..., :3].astype(np.float32)
    light = np.array([0.4, 0.8, 0.45], np.float32)
    shade = np.clip(normals @ light, 0.15, 1.0)[..., None]
    color = np.empty((height, width, 4), np.uint8)
    lit = g["albedo"][..., :3].astype(np.float32) * shade + rng.normal(0, 1.5, (height, width, 3))  # film grain
    color[..., :3] = np.clip(lit, 0, 255).astype(np.uint8)
    color[..., 3] = 255
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    motion = np.stack([(xx - width / 2) * 0.004, (yy - height / 2) * 0.002], -1).astype(np.float16)
    rm = np.concatenate([g["roughness"], g["metallic"]], -1)
    out: dict[str, np.ndarray] = {"hudless_color": color}
    if compact:
        out["depth"] = g["depth"].astype(np.float16)
    else:
        out["depth"] = g["depth"]
    out["motion_vectors"] = motion
    if compact:
        out["normals_oct"] = _octahedral(normals).astype(np.float16)
    else:
        out["normals"] = g["normals"]
    out["albedo"] = g["albedo"]
    out["roughness_metallic"] = np.ascontiguousarray(rm)
    out["material_id"] = g["material_id"]
    return out


def nbytes(arrays: dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays.values())


def memcpy_ms(n: int, reps: int) -> float:
    """Median time of one plain memcpy (numpy copyto, warm destination) of ``n`` bytes."""
    src = np.random.default_rng(0).integers(0, 255, n, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def zmq_floor_ms(endpoint: str, send_bytes: int, back_bytes: int, reps: int) -> float:
    """Median time for plain ZeroMQ (PAIR sockets, two threads, zero-copy) to move ``send_bytes`` one way and
    ``back_bytes`` back over ``endpoint``: what any ZeroMQ-based transport of these bytes costs on this machine."""
    import threading

    import zmq

    ctx = zmq.Context(1)
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    b.bind(endpoint)
    a.connect(b.getsockopt_string(zmq.LAST_ENDPOINT))
    out: Any = np.ones(send_bytes, np.uint8)
    back: Any = np.ones(back_bytes, np.uint8)

    def echo() -> None:
        for _ in range(reps + 2):
            b.recv(copy=False)
            b.send(back, copy=False)

    t = threading.Thread(target=echo)
    t.start()
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        a.send(out, copy=False)
        a.recv(copy=False)
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1e3)
    t.join()
    a.close(0)
    b.close(0)
    ctx.term()
    return statistics.median(times)


def _socket_buffer_max() -> int:
    """The largest SO_SNDBUF/SO_RCVBUF an unprivileged process can ask for (Linux: net.core.[rw]mem_max)."""
    sizes = []
    for name in ("rmem_max", "wmem_max"):
        try:
            sizes.append(int(Path(f"/proc/sys/net/core/{name}").read_text()))
        except (OSError, ValueError):
            return 0
    return min(sizes)


def _tcp_echo(port_queue: Any, send_bytes: int, back_bytes: int, reps: int, bufsize: int) -> None:
    """The far end of ``tcp_socket_floor_ms``: receive ``send_bytes``, answer ``back_bytes``, ``reps`` times."""
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port_queue.put(srv.getsockname()[1])
        conn, _ = srv.accept()
        with conn:
            if bufsize:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            inbox = memoryview(bytearray(send_bytes))
            back = np.ones(back_bytes, np.uint8)
            for _ in range(reps):
                got = 0
                while got < send_bytes:
                    n = conn.recv_into(inbox[got:], send_bytes - got)
                    if n == 0:
                        return
                    got += n
                conn.sendall(back.data)


def tcp_socket_floor_ms(send_bytes: int, back_bytes: int, reps: int) -> tuple[float, int]:
    """Median time for two processes to move ``send_bytes`` one way and ``back_bytes`` back over plain loopback
    TCP sockets (no ZeroMQ, no protocol, no copies but the kernel's, the largest socket buffers allowed): what
    the kernel alone charges for a tcp round trip of these bytes on this machine. Returns (ms, buffer size)."""
    import multiprocessing
    import socket

    bufsize = _socket_buffer_max()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_tcp_echo, args=(q, send_bytes, back_bytes, reps + 2, bufsize), daemon=True)
    proc.start()
    try:
        with socket.create_connection(("127.0.0.1", q.get(timeout=30))) as s:
            if bufsize:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            out = np.ones(send_bytes, np.uint8).data
            inbox = memoryview(bytearray(back_bytes))
            times = []
            for i in range(reps + 2):
                t0 = time.perf_counter()
                s.sendall(out)
                got = 0
                while got < back_bytes:
                    got += s.recv_into(inbox[got:], back_bytes - got)
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return statistics.median(times), bufsize


def compressed_bytes(arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """Bytes on the wire for the set raw, and with each buffer compressed (as libnrb does: a buffer that does not
    shrink goes raw)."""
    import lz4.frame
    import zstandard

    raw = nbytes(arrays)
    z = zstandard.ZstdCompressor(level=1, write_content_size=True)
    sizes = {"raw": raw, "lz4": 0, "zstd": 0}
    for a in arrays.values():
        b = a.tobytes()
        sizes["lz4"] += min(len(lz4.frame.compress(b, store_size=True)), len(b))
        sizes["zstd"] += min(len(z.compress(b)), len(b))
    return sizes


# ------------------------------------------------------------------------------------------------ servers
class ServerProcess:
    """``nrb serve --renderer passthrough`` in a subprocess."""

    def __init__(self, endpoint: str, *extra: str) -> None:
        # libnrb sends only the buffers WELCOME asks for (protocol section 5.2): the passthrough renderer asks for
        # the whole benchmark set, as the renderer whose traffic this measures would
        wants = json.dumps(sorted({n for n, _ in STANDARD + COMPACT}))
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "-q", "serve", "--renderer", "passthrough",
                                      "--endpoint", endpoint, "--max-in-flight", "4", "-o", f"wants={wants}", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.endpoint = m.group(1)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _summary(r: dict[str, Any], moved: int, copy_ms: float) -> dict[str, Any]:
    rt, server = r["rt"], r["server"]
    med = statistics.median(rt)
    own = [a - b for a, b in zip(rt, server)]  # what the transport costs: the round trip minus the server's work
    own_med = statistics.median(own)
    out = {"median_ms": med, "p99_ms": _p99(rt), "gb_per_s": moved / (med / 1e3) / 1e9, "x_memcpy": med / copy_ms,
           "transport_ms": own_med, "transport_p99_ms": _p99(own), "transport_x_memcpy": own_med / copy_ms,
           "write_ms": statistics.median(r["write"]), "notify_ms": statistics.median(r["notify"]),
           "server_ms": statistics.median(server), "samples": len(rt)}
    if r.get("server_parts"):
        out["server_parts_ms"] = {k: statistics.median(v) for k, v in r["server_parts"].items()}
    return out


def _p99(v: list[float]) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, max(0, int(round(0.99 * len(s))) - 1))]


# ------------------------------------------------------------------------------------------------ C++ client
def bench_native(endpoint: str, transport: str, arrays: dict[str, np.ndarray], formats: dict[str, str],
                 iters: int, warmup: int, compression: str = "none") -> dict[str, Any]:
    """Round trips with libnrb: the engine writes each buffer straight into the slot the client hands out."""
    from bridge import _native

    h, w = next(iter(arrays.values())).shape[:2]
    c = _native.Client(endpoint=endpoint, transport=transport, render_size=(w, h), frames_in_flight=1,
                       buffers=[(n, formats[n]) for n in arrays], deadline_ms=DEADLINE_MS, compression=compression,
                       server_timeout_ms=20_000, handshake_timeout_ms=5000, engine="bench")
    try:
        end = time.monotonic() + 10
        while c.stats()["state"] != "connected":
            if time.monotonic() > end:
                raise RuntimeError(f"libnrb did not connect to {endpoint}: {c.last_error}")
            time.sleep(0.005)
        stats0 = c.stats()
        rt: list[float] = []
        notify: list[float] = []
        write: list[float] = []
        server: list[float] = []
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            fid = c.begin()
            for name, a in arrays.items():
                view = c.acquire_slot(name, formats[name], w, h)
                np.copyto(view.reshape(a.shape), a)
                del view
            t_write = time.perf_counter()
            c.submit()
            got = None
            end = time.monotonic() + 30
            while got is None or got[1]["frame_id"] != fid:
                if time.monotonic() > end:
                    raise RuntimeError(f"no result from {endpoint} for frame {fid}: {c.stats()}")
                time.sleep(0.001)  # timing comes from the client's own clock; a busy poll would steal a core
                got = c.acquire_result(with_info=True)
            info = got[1]
            del got
            if i >= warmup:
                wms = (t_write - t0) * 1e3
                total = wms + info["round_trip_ms"]  # submit -> received, timed by the client's I/O thread
                rt.append(total)
                write.append(wms)
                server.append(info["server_ms"])
                notify.append(info["round_trip_ms"] - info["server_ms"])
        s = c.stats()
        sent = (s["bytes_sent"] - stats0["bytes_sent"]) / max(1, s["frames_sent"] - stats0["frames_sent"])
        return {"rt": rt, "notify": notify, "write": write, "server": server, "bytes_sent_per_frame": sent,
                "shm": s["shm_active"], "doorbell": s["doorbell_active"],
                "compression": s["compression"]}
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------ pyzmq client
class _PyShmPool:
    """The engine side of a shared-memory pool in plain Python (shm_open + mmap)."""

    def __init__(self, slots: int, slot_size: int) -> None:
        import _posixshmem  # type: ignore[import-not-found]

        self.name = f"/nrb-bench-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
        fd = _posixshmem.shm_open(self.name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        try:
            os.ftruncate(fd, slots * slot_size)
            self.mm = mmap.mmap(fd, slots * slot_size)
        finally:
            os.close(fd)
        self.slots, self.slot_size = slots, slot_size
        self.buf = np.frombuffer(self.mm, np.uint8)

    def unlink(self) -> None:
        import _posixshmem

        try:
            _posixshmem.shm_unlink(self.name)
        except OSError:
            pass


def bench_pyzmq(endpoint: str, arrays: dict[str, np.ndarray], formats: dict[str, str], iters: int, warmup: int,
                shm: bool = False, context: Any = None) -> dict[str, Any]:
    """Round trips with a plain pyzmq DEALER and ``bridge.protocol``: zero-copy sends of the arrays (or shm refs)."""
    import zmq

    from bridge.protocol import (
        FORMATS,
        Buffer,
        BufferSpec,
        Frame,
        Hello,
        Result,
        ShmPool,
        ShmRef,
        Welcome,
        decode,
        encode,
    )

    h, w = next(iter(arrays.values())).shape[:2]
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    pool = None
    spec = None
    offsets: dict[str, int] = {}
    out_bytes = w * h * FORMATS[OUTPUT_FORMAT].bytes_per_pixel
    if shm:
        off = (out_bytes + 63) // 64 * 64
        for name, a in arrays.items():
            offsets[name] = off
            off += (a.nbytes + 63) // 64 * 64
        pool = _PyShmPool(2, off)
        spec = ShmPool(pool.name, pool.slots, pool.slot_size)
    hello = Hello("bench", "0", "nrb-py-bench/0.1.0", ["shm"] if shm else [], (w, h), (w, h),
                  [BufferSpec(n, formats[n]) for n in arrays], spec)
    sock.send_multipart(encode(hello))
    if not sock.poll(10_000):
        raise RuntimeError(f"no WELCOME from {endpoint}")
    welcome = decode(sock.recv_multipart())
    assert isinstance(welcome, Welcome), welcome
    if pool is not None:
        pool.unlink()
        if "shm" not in welcome.capabilities:
            raise RuntimeError("the server declined shared memory")
    send = {n: np.empty_like(a) for n, a in arrays.items()}  # the engine's write target for inline frames
    rt: list[float] = []
    notify: list[float] = []
    write: list[float] = []
    server: list[float] = []
    parts_ms: dict[str, list[float]] = {}
    try:
        for i in range(warmup + iters):
            frame_id = i + 1
            t0 = time.perf_counter()
            bufs = []
            if pool is not None:
                slot = frame_id % 2
                base = slot * pool.slot_size
                for name, a in arrays.items():
                    dst = pool.buf[base + offsets[name]: base + offsets[name] + a.nbytes]
                    np.copyto(dst.view(a.dtype).reshape(a.shape), a)
                    bufs.append(Buffer(name, formats[name], w, h, a.nbytes // h, None,
                                       shm=ShmRef(slot, offsets[name])))
            else:
                for name, a in arrays.items():
                    np.copyto(send[name], a)
                    bufs.append(Buffer.from_array(name, formats[name], send[name]))
            t_write = time.perf_counter()
            frame = Frame(welcome.session, frame_id, time.monotonic_ns(), 0.016, DEADLINE_MS, bufs,
                          result_slot=frame_id % 2 if pool is not None else None)
            sock.send_multipart(encode(frame), copy=False)
            if not sock.poll(30_000):
                raise RuntimeError(f"no RESULT from {endpoint}")
            parts = sock.recv_multipart(copy=False)
            res = decode(parts, shm_pool=spec)
            t1 = time.perf_counter()
            assert isinstance(res, Result) and res.status == "ok", res
            if i >= warmup:
                rt.append((t1 - t0) * 1e3)
                write.append((t_write - t0) * 1e3)
                notify.append((t1 - t_write) * 1e3 - res.timing.total_ms)
                server.append(res.timing.total_ms)
                for k in ("queue_ms", "decode_ms", "style_ms", "render_ms", "encode_ms"):
                    parts_ms.setdefault(k, []).append(getattr(res.timing, k))
    finally:
        sock.close(0)  # the pool's mapping goes with the last numpy view of it
    return {"rt": rt, "notify": notify, "write": write, "server": server, "server_parts": parts_ms, "shm": shm}


def _inproc_server(endpoint: str) -> Any:
    import zmq

    from bridge.server import Server, ServerConfig

    server = Server(ServerConfig(renderer="passthrough", endpoint=endpoint, status=False),
                    context=zmq.Context.instance())
    server.start()
    return server


# ------------------------------------------------------------------------------------------------ run
def run(out_dir: Path | str = "bench", *, quick: bool = False, sizes: tuple[tuple[int, int], ...] = SIZES,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every mode at every size; write ``transport.json`` / ``transport.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from bridge import _native
        have_native = hasattr(_native, "Client")
    except ImportError:
        have_native = False
    tmp = tempfile.mkdtemp(prefix="nrb-bench-")
    ipc = ServerProcess(f"ipc://{tmp}/server.sock")
    ipc_nobell = ServerProcess(f"ipc://{tmp}/server-nobell.sock", "--no-doorbell")
    tcp = ServerProcess(f"tcp://127.0.0.1:{free_port()}")
    inproc_ep = "inproc://nrb-bench"
    inproc = _inproc_server(inproc_ep)
    results: dict[str, Any] = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
                               "sizes": {}, "quick": quick, "rounds": ROUNDS_QUICK if quick else ROUNDS,
                               "load_before": _loadavg()}
    try:
        for (w, h) in sizes:
            key = f"{w}x{h}"
            arrays = gbuffers(w, h)
            formats = dict(STANDARD)
            gbytes = nbytes(arrays)
            obytes = w * h * 4
            big = w * h >= 1920 * 1080
            iters = (8 if quick else 25) if big else (10 if quick else 40)
            warmup = 3
            copy_ms = memcpy_ms(gbytes + obytes, 10 if quick else 25)
            entry: dict[str, Any] = {"gbuffer_bytes": gbytes, "output_bytes": obytes, "memcpy_ms": copy_ms,
                                     "modes": {}}
            log(f"[{key}] G-buffers {gbytes / 1e6:.1f} MB + output {obytes / 1e6:.1f} MB; memcpy {copy_ms:.2f} ms")

            def record(name: str, mode_runs: list[tuple[dict[str, Any], float]],
                       floor_rounds: dict[str, list[float]]) -> None:
                merged: dict[str, Any] = {k: [] for k in ("rt", "notify", "write", "server")}
                for r, _ in mode_runs:
                    for k in ("rt", "notify", "write", "server"):
                        merged[k] += r[k]
                    for part, v in (r.get("server_parts") or {}).items():
                        merged.setdefault("server_parts", {}).setdefault(part, []).extend(v)
                local_copy_ms = statistics.median([c for _, c in mode_runs])
                s = _summary(merged, gbytes + obytes, local_copy_ms)
                s["memcpy_ms"] = local_copy_ms
                s.update({k: v for k, v in mode_runs[-1][0].items()
                          if k not in ("rt", "notify", "write", "server", "server_parts")})
                # per round: the mode's median over the memcpy next to it, and over its floor in the same round
                floor = floor_rounds[FLOOR_OF.get(name.split(",")[0].split("+")[0], "memcpy")]
                x_copy = [statistics.median(r["rt"]) / c for r, c in mode_runs]
                x_floor = [statistics.median(r["rt"]) / f for (r, _), f in zip(mode_runs, floor)]
                s.update({"rounds": len(mode_runs), "round_median_ms": [statistics.median(r["rt"]) for r, _ in mode_runs],
                          "x_memcpy": statistics.median(x_copy), "x_memcpy_rounds": x_copy,
                          "x_memcpy_spread": _spread(x_copy),
                          "floor": FLOOR_OF.get(name.split(",")[0].split("+")[0], "memcpy"),
                          "x_floor": statistics.median(x_floor), "x_floor_spread": _spread(x_floor),
                          "notify_ms_rounds": [statistics.median(r["notify"]) for r, _ in mode_runs]})
                entry["modes"][name] = s
                log(f"[{key}] {name:24s} median {s['median_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms  "
                    f"{s['gb_per_s']:5.2f} GB/s  {s['x_memcpy']:5.2f}x memcpy (spread {s['x_memcpy_spread']:.2f} over "
                    f"{len(x_copy)} rounds), {s['x_floor']:.2f}x its floor ({s['floor']}) | without the server's "
                    f"{s['server_ms']:5.2f} ms: {s['transport_ms']:6.2f} ms = {s['transport_x_memcpy']:4.2f}x memcpy,"
                    f" notify {s['notify_ms']:.3f} ms")

            modes: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
                ("python inproc", lambda n: bench_pyzmq(inproc_ep, arrays, formats, n, warmup)),
                ("python ipc", lambda n: bench_pyzmq(ipc.endpoint, arrays, formats, n, warmup)),
                ("python tcp", lambda n: bench_pyzmq(tcp.endpoint, arrays, formats, n, warmup)),
                ("python shm", lambda n: bench_pyzmq(ipc.endpoint, arrays, formats, n, warmup, shm=True)),
            ]
            if have_native:
                modes += [
                    ("libnrb ipc", lambda n: bench_native(ipc.endpoint, "inline", arrays, formats, n, warmup)),
                    ("libnrb tcp", lambda n: bench_native(tcp.endpoint, "inline", arrays, formats, n, warmup)),
                    ("libnrb shm", lambda n: bench_native(ipc.endpoint, "shm", arrays, formats, n, warmup)),
                    ("libnrb shm, headers on ZeroMQ", lambda n: bench_native(ipc_nobell.endpoint, "shm", arrays,
                                                                            formats, n, warmup)),
                    ("libnrb tcp, auto -> shm", lambda n: bench_native(tcp.endpoint, "auto", arrays, formats, n,
                                                                      warmup)),
                    ("libnrb tcp+lz4", lambda n: bench_native(tcp.endpoint, "inline", arrays, formats, n, 1,
                                                              compression="lz4")),
                    ("libnrb tcp+zstd", lambda n: bench_native(tcp.endpoint, "inline", arrays, formats, n, 1,
                                                               compression="zstd")),
                ]
            # Rounds: every mode and every floor once per round, the order rotated each round, so that whatever
            # the rest of the machine does hits all of them alike; a mode's verdict uses the spread of its rounds.
            rounds = ROUNDS_QUICK if quick else ROUNDS
            per_round = max(3, iters // rounds)
            runs: dict[str, list[tuple[dict[str, Any], float]]] = {name: [] for name, _ in modes}
            errors: dict[str, str] = {}
            floor_rounds: dict[str, list[float]] = {"memcpy": [], "zmq ipc": [], "zmq tcp": [], "tcp socket": []}
            sock_buf = 0
            for rnd in range(rounds):
                k = rnd % len(modes)
                for name, fn in modes[k:] + modes[:k]:
                    if name in errors:
                        continue
                    try:
                        # each mode is put next to a memcpy timed right before and after it
                        before = memcpy_ms(gbytes + obytes, 5)
                        r = fn(per_round if "+" not in name else max(2, per_round // 3))
                        runs[name].append((r, statistics.median([before, memcpy_ms(gbytes + obytes, 5)])))
                    except Exception as exc:  # one broken mode must not hide the others
                        errors[name] = f"{type(exc).__name__}: {exc}"
                        log(f"[{key}] {name}: FAILED: {exc}")
                floor_rounds["memcpy"].append(memcpy_ms(gbytes + obytes, 5))
                floor_rounds["zmq ipc"].append(zmq_floor_ms(f"ipc://{tmp}/floor.sock", gbytes, obytes, 5))
                floor_rounds["zmq tcp"].append(zmq_floor_ms("tcp://127.0.0.1:*", gbytes, obytes, 5))
                sock_ms, sock_buf = tcp_socket_floor_ms(gbytes, obytes, 5)
                floor_rounds["tcp socket"].append(sock_ms)
            entry["floor_rounds_ms"] = floor_rounds
            for name, _ in modes:
                if name in errors:
                    entry["modes"][name] = {"error": errors[name]}
                elif runs[name]:
                    record(name, runs[name], floor_rounds)
            floors = {"ipc": statistics.median(floor_rounds["zmq ipc"]),
                      "tcp": statistics.median(floor_rounds["zmq tcp"])}
            for name, v in floors.items():
                log(f"[{key}] plain ZeroMQ over {name}, G-buffer bytes there and the image back: "
                    f"{v:.2f} ms = {v / copy_ms:.2f}x memcpy")
            entry["zmq_floor_ms"] = floors
            sock_ms = statistics.median(floor_rounds["tcp socket"])
            entry["tcp_socket_floor"] = {"ms": sock_ms, "x_memcpy": sock_ms / copy_ms, "socket_buffer_bytes": sock_buf,
                                         "spread": _spread(floor_rounds["tcp socket"])}
            log(f"[{key}] plain TCP sockets between two processes (buffers {sock_buf >> 10} KiB), same bytes: "
                f"{sock_ms:.2f} ms = {sock_ms / copy_ms:.2f}x memcpy")
            standard = compressed_bytes(arrays)
            compact = compressed_bytes(gbuffers(w, h, compact=True))
            entry["bytes_per_frame"] = {"standard": standard, "compact": compact}
            results["sizes"][key] = entry
    finally:
        inproc.stop()
        ipc.close()
        ipc_nobell.close()
        tcp.close()
    results["notes"] = {
        "round_trip": "engine begins writing its G-buffers -> rendered image in the engine's hands; one frame in "
                      "flight; real server (passthrough renderer) in another process (inproc: same process)",
        "x_memcpy": "median round trip / one memcpy of (G-buffers + output image) bytes, timed right before and "
                    "after each mode (memcpy_ms per mode)",
        "notify_ms": "round trip - engine write - server's own processing time (RESULT timing.total_ms)",
        "libnrb shm": "headers through the doorbell FIFOs (protocol section 7.1); 'headers on ZeroMQ' is the same "
                      "client against `nrb serve --no-doorbell`",
    }
    results["load_after"] = _loadavg()
    (out / "transport.json").write_text(json.dumps(results, indent=1))
    (out / "transport.md").write_text(markdown(results))
    return results


ROUNDS, ROUNDS_QUICK = 5, 3
#: Above this spread ((max - min) / median of a mode's per-round ratios) a target gets no verdict unless every round
#: falls on the same side of its limit: the rounds disagree more than the margin being judged.
SPREAD_LIMIT = 0.25
#: Each mode's floor, measured in every round next to it: plain ZeroMQ over the same transport for ipc and shm
#: (shm moves headers only, so its floor is the memcpy), plain TCP sockets for tcp.
FLOOR_OF = {"python inproc": "memcpy", "python ipc": "zmq ipc", "python tcp": "tcp socket", "python shm": "memcpy",
            "libnrb ipc": "zmq ipc", "libnrb tcp": "tcp socket", "libnrb shm": "memcpy"}


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _spread(v: list[float]) -> float:
    """(max - min) / median: how far apart a mode's rounds are (0 with one round)."""
    if len(v) < 2:
        return 0.0
    med = statistics.median(v)
    return (max(v) - min(v)) / med if med else 0.0


def verdict(values: list[float], limit: float) -> str:
    """``met`` / ``missed`` from the median of the rounds, or ``no verdict`` when they spread too far for one."""
    med = statistics.median(values)
    agree = all(v <= limit for v in values) or all(v > limit for v in values)
    if _spread(values) > SPREAD_LIMIT and not agree:
        return f"no verdict: rounds {min(values):.2f}..{max(values):.2f} straddle {limit:g}"
    return "met" if med <= limit else "missed"


#: The targets (mode, measure, limit, what, smallest size it is set for). The round-trip ratios are set for the
#: 1080p set, where copies are the whole cost; at 960x540 the server's fixed ~0.4 ms is a third of a memcpy.
TARGETS = (("libnrb shm", "x_memcpy", 1.2, "shared-memory round trip within 1.2x of one memcpy", 1920 * 1080),
           ("libnrb shm", "notify_ms", 0.3, "shared-memory notification overhead under 0.3 ms", 0),
           ("libnrb tcp", "x_memcpy", 3.0, "tcp loopback round trip within 3x of one memcpy", 1920 * 1080))


def _targets(e: dict[str, Any]) -> list[str]:
    rows = []
    pixels = e["output_bytes"] // 4
    for mode, key, limit, what, min_pixels in TARGETS:
        s = e["modes"].get(mode)
        if not s or "error" in s or pixels < min_pixels:
            continue
        v = s[key]
        rounds = s.get(f"{key}_rounds") or [v]
        rows.append(f"| {what} | {v:.3f} | {_spread(rounds):.2f} ({len(rounds)} rounds) | {verdict(rounds, limit)} |")
    return ["", "| target | median of rounds | spread | |", "|---|---:|---:|---|", *rows] if rows else []


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Transport benchmark (`nrb bench transport`)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average before "
             f"{res.get('load_before')}, after {res.get('load_after')}. Modes and floors run in {res.get('rounds')} "
             "interleaved rounds (the order rotated each round); `x memcpy` and `x floor` are medians over the rounds "
             "of each round's ratio to a reference measured in that round (`x floor`: plain ZeroMQ over ipc for ipc "
             "modes, plain TCP sockets for tcp modes, the memcpy for shm and inproc), `spread` = (max - min) / "
             "median of those ratios; a target whose rounds straddle its limit with a spread over "
             f"{SPREAD_LIMIT:g} gets no verdict. Server: `nrb serve --renderer "
             "passthrough` in another process (in-process for inproc). One frame in flight. A round trip runs from "
             "the engine starting to write its G-buffers for the transport to the rendered image being in its "
             "hands. `x memcpy`: over one plain memcpy of the same bytes (G-buffers in + image out), timed right "
             "before and after each mode (the machine is shared). `transport`: the round trip minus the server's "
             "own processing time (its RESULT `timing.total_ms`), i.e. engine write + messaging. `notify`: "
             "transport minus the engine's write. `libnrb shm` rings the doorbell (per-frame headers through two "
             "FIFOs, docs/protocol.md section 7.1); `headers on ZeroMQ` is the same client against "
             "`nrb serve --no-doorbell`.", ""]
    for key, e in res["sizes"].items():
        lines += [f"## {key}: {e['gbuffer_bytes'] / 1e6:.1f} MB G-buffers + {e['output_bytes'] / 1e6:.1f} MB image; "
                  f"memcpy {e['memcpy_ms']:.2f} ms", "",
                  "| mode | round trip median ms | p99 ms | GB/s | x memcpy | spread | x floor (which) | spread | "
                  "server ms | transport ms | transport x memcpy | engine write ms | notify ms | wire bytes/frame |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in e["modes"].items():
            if "error" in s:
                lines.append(f"| {name} | failed: {s['error']} | | | | | | | | | | | | |")
                continue
            wire = s.get("bytes_sent_per_frame")
            wire_s = f"{wire / 1e6:.2f} MB" if wire and wire > 1e5 else (f"{wire:.0f} B" if wire else "")
            lines.append(f"| {name} | {s['median_ms']:.2f} | {s['p99_ms']:.2f} | {s['gb_per_s']:.2f} | "
                         f"{s['x_memcpy']:.2f} | {s.get('x_memcpy_spread', 0):.2f} | "
                         f"{s.get('x_floor', float('nan')):.2f} ({s.get('floor', '')}) | "
                         f"{s.get('x_floor_spread', 0):.2f} | {s['server_ms']:.2f} | {s['transport_ms']:.2f} | "
                         f"{s['transport_x_memcpy']:.2f} | {s['write_ms']:.2f} | {s['notify_ms']:.3f} | {wire_s} |")
        lines += _targets(e)
        if e.get("zmq_floor_ms"):
            lines += ["", "Floor: plain ZeroMQ (PAIR, zero-copy, no protocol, no server work) moving the same bytes "
                      "there and back, no engine write: " + ", ".join(
                          f"{k} {v:.2f} ms ({v / e['memcpy_ms']:.2f}x memcpy)" for k, v in e["zmq_floor_ms"].items())]
        if e.get("tcp_socket_floor"):
            f = e["tcp_socket_floor"]
            lines += ["", f"Kernel floor for tcp: plain loopback TCP sockets between two processes (no ZeroMQ, no "
                      f"protocol, no engine write, {f['socket_buffer_bytes'] >> 10} KiB socket buffers, the most "
                      f"an unprivileged process gets) moving the same bytes there and back: {f['ms']:.2f} ms "
                      f"({f['x_memcpy']:.2f}x memcpy)."]
        parts = next((s["server_parts_ms"] for s in e["modes"].values() if s.get("server_parts_ms")), None)
        if parts:
            lines += ["", "Server time per frame (median, from RESULT timing): " +
                      ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in parts.items())]
        b = e["bytes_per_frame"]
        lines += ["", "Bytes per frame (G-buffers only):", "", "| set | raw | lz4 | zstd -1 |", "|---|---:|---:|---:|"]
        for setname, label in (("standard", "as benchmarked (normals rgba16f, depth r32f)"),
                                ("compact", "compact (normals_oct rg16f, depth r16f)")):
            s = b[setname]
            lines.append(f"| {label} | {s['raw'] / 1e6:.2f} MB | {s['lz4'] / 1e6:.2f} MB ({s['raw'] / s['lz4']:.1f}x) "
                         f"| {s['zstd'] / 1e6:.2f} MB ({s['raw'] / s['zstd']:.1f}x) |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(p: Any) -> None:
    p.add_argument("--out", default="bench", help="output directory (transport.json, transport.md)")
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    p.add_argument("--size", action="append", metavar="WxH", help="only these sizes (default 960x540 and 1920x1080)")


def main(args: Any) -> int:
    sizes = tuple(tuple(int(v) for v in s.lower().split("x")) for s in args.size) if args.size else SIZES
    run(args.out, quick=args.quick, sizes=sizes)  # type: ignore[arg-type]
    return 0


def register(bench_sub: Any) -> None:
    """Add ``transport`` to the subparsers of ``nrb bench``."""
    p = bench_sub.add_parser("transport", help="transport round trips (inproc/ipc/tcp/shm, libnrb and pyzmq)",
                             description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=main)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nrb_bench.transport")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
