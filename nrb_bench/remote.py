"""``nrb bench remote``: libnrb and ``nrb serve`` on two network namespaces joined by a shaped veth pair.

A remote renderer (a GPU box in the studio, a cloud service) is what the tcp path is for, and loopback says nothing
about it: there the link is a memcpy. This bench builds the link itself, so the numbers are about a real one:

* Two network namespaces (engine side and server side) joined by a veth pair, with addresses that exist only inside
  them (``10.250.N.1`` / ``.2``), so nothing on the host's own network is touched. Root only: without it the bench
  says so and writes a report that says it was skipped.
* The rate: ``tc`` tbf on both veth ends (full duplex: each direction has the whole rate). The RTT: this kernel has
  no netem, so a delay line (``nrb_bench/tun_delay.c``, built with ``cc`` on first use) reads every packet the
  engine sends to the server from a TUN device and writes it back after the delay; the engine namespace routes the
  server's address into the TUN and forwards what comes back out of it (policy rule on the input interface) onto
  the veth. The TUN takes GSO super-packets, so one helper thread keeps up with 10 Gbit/s.
* Everything (servers, the delay line, the namespaces and with them the veth pair) is deleted afterwards, also on
  Ctrl-C, SIGTERM and exceptions.
* Server: ``nrb serve --renderer passthrough`` in the server namespace (``-o upscale=2`` for the cells whose G-buffers
  are at half the output size). Engine: ``bridge._native.Client`` (libnrb) in the engine namespace, writing each
  buffer into the slot libnrb hands out, as an engine does, and submitting whenever libnrb has room for one more
  frame in flight (its limit: fixed, or adaptive, protocol section 5.9); none waits queued behind them.
* Cells: link x size (output / render) x buffer set (standard, compact) x codec (none, lz4, zstd; ``default``:
  left unset as the plugins leave it, which is lz4 on these remote links) x frames in flight
  (1, 4, 0 = libnrb's adaptive policy). Per cell: fps, p50/p99 latency (submit -> image in the engine's hands, plus
  the engine's own write), MB up and down per frame (libnrb's own byte counters), the link's limit for those bytes
  (rate / the larger direction's bytes per frame) and the fraction reached, CPU seconds per frame of the engine and
  the server processes (the coarse profile: which side the cores go to), and the server's own time per frame.
* Floor: plain TCP sockets through the same link moving the same bytes per frame (up, then the image's bytes back),
  pipelined, in the same run: what the link and the kernel allow with no protocol, no copies and no renderer.
* The machine's load average before and after is in the report: numbers measured on a loaded machine are not final.

Writes ``remote.json`` and ``remote.md`` into the output directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nrb_bench.machine import cpu_name
from nrb_bench.verdicts import of_repeats

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DELAY_SOURCE = HERE / "tun_delay.c"


@dataclass(frozen=True)
class Link:
    """A shaped link: ``rate_mbit`` each way, ``rtt_ms`` added round trip (0: none, no delay line)."""

    name: str
    rate_mbit: int
    rtt_ms: float = 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.rate_mbit * 1e6 / 8


@dataclass(frozen=True)
class Cell:
    """One measurement: what the engine sends over which link and how."""

    link: Link
    output: tuple[int, int]
    render: tuple[int, int]
    buffer_set: str  # "standard" | "compact"
    codec: str  # "none" | "lz4" | "zstd" | "default" (unset: the link's, nrb.h nrb_compression)
    in_flight: int  # 0: libnrb's adaptive policy
    lossy: int = 0  # 1..100: the engine allows the image back lossily at this quality (protocol 6.3.1); 0: exact
    lossy_codec: str = "jpeg"  # that image codec: "jpeg" or "webp"
    chunks: bool = True  # the server accepts "chunked" (protocol 6.3.2); False: nrb serve --no-chunks
    shuffle: bool = True  # the server accepts "shuffle" (protocol 6.3.3); False: nrb serve --no-shuffle
    #: what travels in PART messages (protocol 6.3.4-6.3.5): "both" (the default), "output" (the image only: nrb
    #: serve --no-streamed-frames), "frames" (the G-buffers only: --no-streamed-output), "none" (both flags)
    streamed: str = "both"
    game_fps: int = 0  # the engine's loop ticks at this rate and offers a frame per tick; 0: as fast as it can

    @property
    def upscale(self) -> int:
        return self.output[0] // self.render[0]

    @property
    def label(self) -> str:
        o, r = self.output, self.render
        size = f"{o[0]}x{o[1]}" + (f" from {r[0]}x{r[1]}" if r != o else "")
        fif = "adaptive" if self.in_flight == 0 else str(self.in_flight)
        codec = codec_label(self.codec, self.lossy, self.lossy_codec, self.chunks, self.shuffle, self.streamed)
        return f"{self.link.name} | {size} | {self.buffer_set} | {codec} | {fif} | {game_loop(self.game_fps)}"


def codec_label(codec: str, lossy: int, lossy_codec: str = "jpeg", chunks: bool = True, shuffle: bool = True,
                streamed: str = "both") -> str:
    """The codec column: the frame's codec, and the image's lossy one when allowed (``lz4 + jpeg q90``); ``whole``
    when the server took no chunks (``nrb serve --no-chunks``: one frame per buffer, as before protocol 6.3.2);
    ``unshuffled`` when it took no byte shuffle (``nrb serve --no-shuffle``: as before protocol 6.3.3);
    ``unstreamed`` when neither the frame nor the image travelled in PARTs (``nrb serve --no-streamed-output
    --no-streamed-frames``: as before protocol 6.3.4), ``streamed output`` / ``streamed frames`` when only one did."""
    whole = " whole" if not chunks and codec != "none" else ""
    plain = " unshuffled" if not shuffle and codec != "none" else ""
    one = {"none": " unstreamed", "output": " streamed output", "frames": " streamed frames"}.get(streamed, "") \
        if chunks and codec != "none" else ""
    return codec + whole + plain + one + (f" + {lossy_codec} q{lossy}" if lossy else "")


def game_loop(game_fps: int) -> str:
    """The game loop column: ``60 Hz`` (a loop at its own rate offering one frame per tick) or ``unpaced``."""
    return f"{game_fps} Hz" if game_fps else "unpaced"


LINKS = (Link("10 Gbit/s", 10_000), Link("1 Gbit/s, 2 ms RTT", 1_000, 2.0))
#: (output, render): full-resolution G-buffers, and the remote default of half the output with a 2x upscale.
SIZES = (((1920, 1080), (1920, 1080)), ((1920, 1080), (960, 540)), ((960, 540), (960, 540)))
SETS = ("standard", "compact")
CODECS = ("none", "lz4", "zstd")
#: ``default``: the engine leaves compression unset, as the plugins do (libnrb's remote-link default, lz4)
CODEC_CHOICES = (*CODECS, "default")
IN_FLIGHT = (1, 4, 0)


# ------------------------------------------------------------------------------------------------ namespaces
def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def can_build_namespaces() -> str | None:
    """Why this process cannot build the bench's network (None when it can)."""
    if os.geteuid() != 0:
        return "nrb bench remote builds network namespaces, a veth pair and tc qdiscs: run it as root"
    for tool in ("ip", "tc", "cc"):
        if shutil.which(tool) is None:
            return f"nrb bench remote needs `{tool}` on PATH"
    if not Path("/dev/net/tun").exists():
        return "nrb bench remote needs /dev/net/tun for its delay line"
    return None


def delay_line_binary() -> Path:
    """``tun_delay`` built from its C source (rebuilt when the source is newer), in the build directory."""
    out = REPO / "build" / "bench" / "tun_delay"
    if not out.exists() or out.stat().st_mtime < DELAY_SOURCE.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sh("cc", "-O2", "-Wall", "-o", str(out), str(DELAY_SOURCE))
    return out


class Network:
    """The two namespaces, the veth pair between them, the shaping and the delay line; ``close`` deletes all."""

    def __init__(self, link: Link) -> None:
        tag = f"{os.getpid() % 100000}"
        self.link = link
        self.engine_ns, self.server_ns = f"nrbbench{tag}e", f"nrbbench{tag}s"
        self.engine_if, self.server_if = f"nrbb{tag}e", f"nrbb{tag}s"
        self.tun = f"nrbb{tag}d"
        net = 10 + os.getpid() % 240
        self.engine_ip, self.server_ip = f"10.250.{net}.1", f"10.250.{net}.2"
        self.delay: subprocess.Popen[str] | None = None
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def run_in(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _sh("ip", "netns", "exec", ns, *args)

    def _build(self) -> None:
        e, s = self.engine_ns, self.server_ns
        for ns in (e, s):
            _sh("ip", "netns", "add", ns)
            self._made.append(ns)
        _sh("ip", "link", "add", self.engine_if, "type", "veth", "peer", "name", self.server_if)
        _sh("ip", "link", "set", self.engine_if, "netns", e)
        _sh("ip", "link", "set", self.server_if, "netns", s)
        for ns, dev, ip in ((e, self.engine_if, self.engine_ip), (s, self.server_if, self.server_ip)):
            _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            # tbf: the rate; a burst of 1 ms at the rate (at least 256 KiB: the timer's granularity); a queue of
            # 50 ms, longer than any RTT here, so the shaper delays rather than drops.
            burst = max(256 * 1024, int(self.link.bytes_per_s / 1000))
            self.run_in(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{self.link.rate_mbit}mbit",
                        "burst", str(burst), "latency", "50ms")
        if self.link.rtt_ms > 0:
            self._delay_line()

    def _delay_line(self) -> None:
        """Route engine -> server packets through the TUN delay line (the whole RTT added one way)."""
        e = self.engine_ns
        self.delay = subprocess.Popen(["ip", "netns", "exec", e, str(delay_line_binary()), self.tun,
                                       str(int(self.link.rtt_ms * 1000))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.delay.stdout is not None
        line = self.delay.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the delay line did not start: {line!r} {self.delay.stderr.read() if self.delay.stderr else ''}")
        for key, value in (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                           ("net.ipv4.conf.default.rp_filter", "0"), (f"net.ipv4.conf.{self.tun}.rp_filter", "0"),
                           (f"net.ipv4.conf.{self.tun}.accept_local", "1")):
            self.run_in(e, "sysctl", "-qw", f"{key}={value}")
        _sh("ip", "-n", e, "link", "set", self.tun, "up")
        _sh("ip", "-n", e, "route", "add", f"{self.server_ip}/32", "dev", self.tun, "src", self.engine_ip)
        _sh("ip", "-n", e, "rule", "add", "iif", self.tun, "lookup", "100", "pref", "100")
        _sh("ip", "-n", e, "route", "add", f"{self.server_ip}/32", "dev", self.engine_if, "table", "100")

    def losses(self) -> dict[str, int]:
        """Counters that say the link lost packets, summed so far: packets the shapers (``tbf_dropped``) and the
        delay line's TUN queue (``tun_dropped``) dropped, and TCP segments sent again (``retransmitted``, both
        namespaces), of which the receiver reported ``spurious`` ones as duplicates (DSACK). A retransmission after
        a dropped tail waits for TCP's 200 ms minimum timeout: a cell whose p99 jumps by that much and whose counters
        moved was hurt by the link, not by what runs on it. A veth hands each packet to the backlog of the CPU that
        sent it, so a sender moving between CPUs reorders its own flow and TCP retransmits what was never lost: at
        10 Gbit/s about 9,000 a 4 s cell, nearly all spurious. (Receive packet steering keeps a flow in order, as a
        real NIC does, but on these two shared cores it cost a third of the 10 Gbit/s throughput in a loaded spell.)"""
        def read(ns: str, *args: str) -> str:
            return _sh("ip", "netns", "exec", ns, *args, check=False).stdout

        tbf = 0
        for ns, dev in ((self.engine_ns, self.engine_if), (self.server_ns, self.server_if)):
            m = re.search(r"dropped (\d+)", read(ns, "tc", "-s", "qdisc", "show", "dev", dev))
            tbf += int(m.group(1)) if m else 0
        tun = 0
        if self.delay is not None:
            text = read(self.engine_ns, "cat", f"/sys/class/net/{self.tun}/statistics/tx_dropped").strip()
            tun = int(text) if text.isdigit() else 0
        retrans = spurious = 0
        for ns in (self.engine_ns, self.server_ns):
            text = read(ns, "nstat", "-az", "TcpRetransSegs", "TcpExtTCPDSACKRecvSegs")
            m = re.search(r"TcpRetransSegs\s+(\d+)", text)
            retrans += int(m.group(1)) if m else 0
            m = re.search(r"TcpExtTCPDSACKRecvSegs\s+(\d+)", text)
            spurious += int(m.group(1)) if m else 0
        return {"tbf_dropped": tbf, "tun_dropped": tun, "retransmitted": retrans, "spurious": spurious}

    def close(self) -> None:
        """Stop the delay line and delete the namespaces (which deletes the veth pair and the TUN with them)."""
        if self.delay is not None:
            with suppress(OSError):
                if self.delay.stdin:
                    self.delay.stdin.close()
            with suppress(OSError):
                self.delay.terminate()
            try:
                self.delay.wait(5)
            except subprocess.TimeoutExpired:
                self.delay.kill()
                self.delay.wait(5)
            self.delay = None
        for ns in reversed(self._made):
            _sh("ip", "netns", "del", ns, check=False)
        self._made.clear()


@contextmanager
def network(link: Link) -> Iterator[Network]:
    """A ``Network`` for the block; SIGTERM is turned into an exception meanwhile so the cleanup runs."""
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, on_term)
    net = Network(link)
    try:
        yield net
    finally:
        net.close()
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------------------------ processes
def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid`` by its OS name (``nrb-io``, ``nrb-render-0``,
    ``nrb-pool``, ``nrb-chunk``, ``ZMQbg/IO/0``, ``python`` for the main thread...), threads of one name summed."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in kids:
        out.append(int(k))
        out += _descendants(int(k))
    return out


class Server:
    """``nrb serve --renderer passthrough`` inside the server namespace."""

    def __init__(self, net: Network, upscale: int, port: int, chunks: bool = True, shuffle: bool = True,
                 streamed: str = "both") -> None:
        cmd = ["ip", "netns", "exec", net.server_ns, sys.executable, "-m", "bridge", "-q", "serve", "--renderer",
               "passthrough", "--endpoint", f"tcp://{net.server_ip}:{port}", "--max-in-flight", "8", "--no-status",
               "--insecure"]  # the address exists only inside the bench's namespaces
        if upscale != 1:
            cmd += ["-o", f"upscale={upscale}"]
        if not chunks:
            cmd.append("--no-chunks")
        if not shuffle:
            cmd.append("--no-shuffle")
        if streamed in ("none", "frames"):
            cmd.append("--no-streamed-output")
        if streamed in ("none", "output"):
            cmd.append("--no-streamed-frames")
        # libnrb sends only what WELCOME asks for: the passthrough renderer asks for a neural renderer's G-buffers
        cmd += ["-o", "wants=" + json.dumps(sorted(set(_formats("standard")) | set(_formats("compact"))))]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            self.close()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"the server did not start: {line!r} {err[-2000:]}")
        self.endpoint = m.group(1)

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(p) for p in [self.proc.pid, *_descendants(self.proc.pid)])

    def threads(self) -> dict[str, float]:
        return thread_cpu(self.proc.pid)

    def close(self) -> None:
        for p in _descendants(self.proc.pid):  # ip netns exec execs python: normally no child; be sure anyway
            with suppress(ProcessLookupError):
                os.kill(p, signal.SIGINT)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _in_namespace(net: Network, ns: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m nrb_bench.remote ARGS`` in ``ns``; its last stdout line is a JSON answer."""
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "nrb_bench.remote", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ------------------------------------------------------------------------------------------------ engine side
def _formats(buffer_set: str) -> dict[str, str]:
    from nrb_bench.transport import COMPACT, STANDARD

    return dict(COMPACT if buffer_set == "compact" else STANDARD)


def engine_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """The engine's side of one cell (runs inside the engine namespace): pipelined frames for ``seconds``."""
    import numpy as np

    from bridge import _native
    from nrb_bench.transport import gbuffers

    rw, rh = spec["render"]
    ow, oh = spec["output"]
    arrays = gbuffers(rw, rh, compact=spec["buffer_set"] == "compact")
    if spec.get("content") == "mostly_noise":  # saves about a tenth when compressed: pays on slow links only
        rng = np.random.default_rng(7)
        for a in arrays.values():
            a.view(np.uint8)[...] = rng.integers(0, 256, a.view(np.uint8).shape, dtype=np.uint8)
            a[::10] = 0
    formats = _formats(spec["buffer_set"])
    c = _native.Client(endpoint=spec["endpoint"], transport="inline", render_size=(rw, rh), output_size=(ow, oh),
                       frames_in_flight=spec["in_flight"], buffers=[(n, formats[n]) for n in arrays],
                       deadline_ms=10_000.0, compression="auto" if spec["codec"] == "default" else spec["codec"],
                       server_timeout_ms=30_000,
                       handshake_timeout_ms=10_000, engine="bench-remote", lossy_quality=spec.get("lossy", 0),
                       lossy_codec=spec.get("lossy_codec", "jpeg"),
                       exact_formats=True)  # the cell's set is what travels (no remote-link compact defaults)
    try:
        end = time.monotonic() + 20
        while c.stats()["state"] != "connected":
            if time.monotonic() > end:
                raise RuntimeError(f"libnrb did not connect to {spec['endpoint']}: {c.last_error}")
            time.sleep(0.005)
        submitted: dict[int, float] = {}  # frame id -> when the engine began writing it
        threads0: dict[str, float] = {}
        received_all = 0
        latency: list[float] = []
        write_ms: list[float] = []
        round_trip: list[float] = []  # libnrb's submit -> RESULT received, per frame
        server_ms: list[float] = []  # the renderer's timing.total_ms (decompress .. image compressed), per frame
        received = 0
        warmup_until = time.monotonic() + spec["warmup"]
        measuring = False
        t_start = 0.0
        s0: dict[str, Any] = {}
        cpu0 = 0.0
        deadline = warmup_until + spec["seconds"]
        # a game loop at its own rate offers a frame once per tick (libnrb takes it if a frame slot is free, else
        # that tick shows the engine's own image); unpaced, the loop offers one whenever a slot frees
        period = 1.0 / spec["game_fps"] if spec.get("game_fps") else 0.0
        next_tick = time.monotonic()
        while True:
            now = time.monotonic()
            if not measuring and now >= warmup_until:
                measuring, t_start, s0, cpu0 = True, time.perf_counter(), c.stats(), time.process_time()
                threads0 = thread_cpu(os.getpid())
                latency.clear()
                write_ms.clear()
                round_trip.clear()
                server_ms.clear()
                received = 0
            if now >= deadline:
                break
            s = c.stats()
            # answered, skipped by the renderer (results_late: superseded or past its deadline), dropped or lost
            pending = (s["frames_submitted"] - s["results_received"] - s["results_late"] - s["frames_dropped"]
                       - s["frames_lost"])
            due = not period or now >= next_tick
            if due and period:
                next_tick = next_tick + period if next_tick + period > now else now + period  # late: no bunched ticks
            if due and pending < s["in_flight_limit"]:  # a frame queued behind them would wait a whole frame
                t0 = time.perf_counter()
                fid = c.begin()
                for name, a in arrays.items():
                    view = c.acquire_slot(name, formats[name], rw, rh)
                    np.copyto(view.reshape(a.shape), a)
                    del view
                t1 = time.perf_counter()
                c.submit()
                submitted[fid] = t0
                write_ms.append((t1 - t0) * 1e3)
            got = c.acquire_result(with_info=True)
            fresh = got is not None and got[1]["frame_id"] in submitted  # the newest image stays acquirable
            if not fresh:
                del got
                time.sleep(0.002)  # an engine's frame loop would do other work here; a busy poll steals a core
                continue
            assert got is not None
            info = got[1]
            del got
            t_begin = submitted.pop(info["frame_id"], None)
            if t_begin is not None:
                received_all += 1
                latency.append((time.perf_counter() - t_begin) * 1e3)
                round_trip.append(info["round_trip_ms"])
                server_ms.append(info["server_ms"])
                received += 1
        elapsed = time.perf_counter() - t_start
        threads = _delta(thread_cpu(os.getpid()), threads0)
        s1 = c.stats()
        frames = max(1, s1["frames_sent"] - s0["frames_sent"])
        results = max(1, s1["results_received"] - s0["results_received"])
        lat = sorted(latency)
        return {"fps": received / elapsed, "frames": received, "seconds": elapsed,
                "p50_ms": statistics.median(lat) if lat else None,
                "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
                "up_bytes": (s1["bytes_sent"] - s0["bytes_sent"]) / frames,
                "down_bytes": (s1["bytes_received"] - s0["bytes_received"]) / results,
                "write_ms": statistics.median(write_ms) if write_ms else None,
                "round_trip_ms": statistics.median(round_trip) if round_trip else None,
                "server_ms": statistics.median(server_ms) if server_ms else None,
                "engine_cpu_s": time.process_time() - cpu0, "compression": s1["compression"],
                "in_flight_limit": s1["in_flight_limit"], "dropped": s1["frames_dropped"] - s0["frames_dropped"],
                "skipped": s1["results_late"] - s0["results_late"],
                "rtt_p50_ms": s1["rtt_p50_ms"], "frames_all": received_all,
                "engine_threads_ms": {k: 1e3 * v / max(1, received) for k, v in threads.items()}}
    finally:
        c.close()


def tcp_sink(spec: dict[str, Any]) -> dict[str, Any]:
    """The server side of the raw-TCP floor: per frame, read ``up`` bytes and answer ``down`` bytes."""
    up, down = spec["up"], spec["down"]
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((spec["host"], spec["port"]))
        srv.listen(1)
        print("ready", flush=True)
        conn, _ = srv.accept()
        with conn:
            inbox = memoryview(bytearray(min(up, 1 << 22)))
            back = b"\x01" * down
            frames = 0
            while True:
                got = 0
                while got < up:
                    n = conn.recv_into(inbox, min(len(inbox), up - got))
                    if n == 0:
                        return {"frames": frames}
                    got += n
                conn.sendall(back)
                frames += 1


def tcp_source(spec: dict[str, Any]) -> dict[str, Any]:
    """The engine side of the raw-TCP floor: ``in_flight`` frames of ``up`` bytes outstanding, each answered by
    ``down`` bytes; frames per second and per-frame latency over ``seconds``."""
    up, down, window = spec["up"], spec["down"], max(1, spec["in_flight"])
    sock = socket.create_connection((spec["host"], spec["port"]), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = memoryview(b"\x02" * up)
    sent_at: list[float] = []
    lat: list[float] = []
    lock = threading.Condition()
    stop = time.monotonic() + spec["warmup"] + spec["seconds"]
    done = {"n": 0, "measured": 0, "t0": 0.0, "t_last": 0.0}
    warm_until = time.monotonic() + spec["warmup"]

    def receiver() -> None:
        inbox = memoryview(bytearray(min(down, 1 << 22)))
        while True:
            got = 0
            while got < down:
                try:
                    n = sock.recv_into(inbox, min(len(inbox), down - got))
                except OSError:
                    return  # closed at the end of the run
                if n == 0:
                    return
                got += n
            now = time.perf_counter()
            with lock:
                t = sent_at.pop(0)
                if time.monotonic() >= warm_until:
                    if done["measured"] == 0:
                        done["t0"] = now
                    else:
                        lat.append((now - t) * 1e3)
                    done["measured"] += 1
                    done["t_last"] = now
                done["n"] += 1
                lock.notify_all()

    th = threading.Thread(target=receiver, daemon=True)
    th.start()
    while time.monotonic() < stop:
        with lock:
            while len(sent_at) >= window:
                lock.wait()
            sent_at.append(time.perf_counter())
        sock.sendall(payload)
    with lock:
        measured, t0, t_end = done["measured"], done["t0"], done["t_last"]
    sock.close()
    s = sorted(lat)
    return {"fps": (measured - 1) / max(1e-9, t_end - t0) if measured > 1 else 0.0,
            "p50_ms": statistics.median(s) if s else None,
            "p99_ms": s[min(len(s) - 1, int(0.99 * len(s)))] if s else None}


def tcp_floor(net: Network, port: int, up: int, down: int, in_flight: int, seconds: float) -> dict[str, Any]:
    """Plain TCP through the same link, same bytes per frame each way, ``in_flight`` frames outstanding."""
    spec = {"host": net.server_ip, "port": port, "up": int(up), "down": int(down), "in_flight": in_flight,
            "seconds": seconds, "warmup": 0.5}
    sink = subprocess.Popen(["ip", "netns", "exec", net.server_ns, sys.executable, "-m", "nrb_bench.remote",
                             "--tcp-sink", json.dumps(spec)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != "ready":
            raise RuntimeError("the raw-TCP sink did not start")
        return _in_namespace(net, net.engine_ns, ["--tcp-source", json.dumps(spec)], timeout=seconds + 60)
    finally:
        sink.terminate()
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(5)


# ------------------------------------------------------------------------------------------------ image codecs
#: (label, codec, quality): the returned image's codecs, lossless then lossy (protocol 6.3, 6.3.1)
IMAGE_CODECS = (("lz4", "lz4", 0), ("zstd", "zstd", 0), ("jpeg q90", "jpeg", 90), ("webp q90", "webp", 90),
                ("webp q75", "webp", 75), ("webp q100 (lossless)", "webp", 100))


def image_codec_table(output: tuple[int, int] = (1920, 1080), repeat: int = 5) -> list[dict[str, Any]]:
    """The image a 1920x1080-from-960x540 cell returns (the bench's engine image, 2x2 upscaled by the passthrough
    renderer) through each codec, in this process, the codecs interleaved ``repeat`` times (medians): bytes, the
    server's encode (what ``nrb serve`` runs: Pillow for the image codecs, python-lz4/zstandard for the lossless
    ones) and the engine's decode (libnrb's codec through ``bridge._wire_testing``; Pillow where that is not built),
    and the link time of those bytes at 1 Gbit/s."""
    import numpy as np

    from bridge import image_codec
    from bridge.protocol import Buffer
    from nrb_bench.transport import gbuffers

    w, h = output
    small = gbuffers(w // 2, h // 2)["hudless_color"]
    img = np.ascontiguousarray(np.repeat(np.repeat(small, 2, 0), 2, 1))
    raw = img.tobytes()
    buf = Buffer.from_array("output", "rgba8_srgb", img)
    try:
        from bridge import _wire_testing as wt  # libnrb's decoder, built for editable installs
    except ImportError:
        wt = None

    def encode(codec: str, q: int) -> bytes:
        if codec == "lz4":
            import lz4.frame

            return bytes(lz4.frame.compress(raw, store_size=True))
        if codec == "zstd":
            import zstandard

            return bytes(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(raw))
        return image_codec.encode_image(buf, q, codec)

    def result_header(codec: str, data: bytes) -> bytes:
        """The RESULT header that carries ``data`` as its image (built outside the timed decode)."""
        from bridge.protocol import Result, Timing, encode_header

        out = Buffer("output", "rgba8_srgb", w, h, w * 4, raw, codec)
        out.compressed = memoryview(data)
        return encode_header(Result(1, 1, "ok", Timing(), out))

    def decode(codec: str, header: bytes, data: bytes) -> None:
        if wt is not None:
            wt.wire_decode([header, data], compression=[codec])
        elif codec in ("jpeg", "webp"):
            image_codec.decode_image(data, w, h, codec=codec)

    rows: dict[str, dict[str, list[float]]] = {label: {"bytes": [], "enc": [], "dec": []}
                                               for label, _, _ in IMAGE_CODECS}
    for _ in range(repeat):
        for label, codec, q in IMAGE_CODECS:
            t0 = time.perf_counter()
            data = encode(codec, q)
            t1 = time.perf_counter()
            header = result_header(codec, data)
            t1b = time.perf_counter()
            decode(codec, header, data)
            t2 = time.perf_counter() - (t1b - t1)
            r = rows[label]
            r["bytes"].append(len(data))
            r["enc"].append((t1 - t0) * 1e3)
            r["dec"].append((t2 - t1) * 1e3)
    med = statistics.median
    return [{"codec": label, "raw_bytes": len(raw), "bytes": med(rows[label]["bytes"]),
             "ratio": len(raw) / med(rows[label]["bytes"]), "encode_ms": med(rows[label]["enc"]),
             "decode_ms": med(rows[label]["dec"]), "link_ms_1gbit": med(rows[label]["bytes"]) * 8 / 1e6,
             "decoder": "libnrb" if wt is not None else "Pillow"} for label, _, _ in IMAGE_CODECS]


# ------------------------------------------------------------------------------------------------ run
def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


@dataclass
class Options:
    links: tuple[Link, ...] = LINKS
    sizes: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = SIZES
    sets: tuple[str, ...] = SETS
    codecs: tuple[str, ...] = CODECS
    in_flight: tuple[int, ...] = IN_FLIGHT
    lossy: tuple[int, ...] = (0,)  # lossy qualities the engine allows for the image (0: exact)
    lossy_codecs: tuple[str, ...] = ("jpeg",)  # their codecs
    chunks: tuple[bool, ...] = (True,)  # servers with and without chunked payloads (an interleaved A/B)
    shuffle: tuple[bool, ...] = (True,)  # servers with and without the byte shuffle (an interleaved A/B)
    streamed: tuple[str, ...] = ("both",)  # what servers stream (Cell.streamed; several: an interleaved A/B)
    game_fps: tuple[int, ...] = (0,)  # the engine loop's rates (0: unpaced, a frame whenever a slot frees)
    image_codecs: bool = True  # the table of the returned image through each codec (size, encode/decode ms)
    seconds: float = 4.0
    warmup: float = 1.5
    repeat: int = 1
    floor: bool = True
    notes: list[str] = field(default_factory=list)


def run(out_dir: Path | str = "bench", *, quick: bool = False, options: Options | None = None,
        log: Any = print, report: str = "remote") -> dict[str, Any]:
    """Build the network per link, run every cell (``repeat`` rounds, interleaved), write the reports."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opts = options or Options()
    if quick and options is None:
        opts = Options(sizes=SIZES[1:2], sets=("compact",), codecs=("none", "lz4"), in_flight=(1, 0), seconds=2.0,
                       warmup=1.0)
    results: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "load_before": _loadavg(), "options": {k: v for k, v in asdict(opts).items() if k != "links"},
        "links": [asdict(lk) for lk in opts.links], "cells": [], "quick": quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if opts.image_codecs and not quick:  # no network needed: measured before the namespaces exist
        log("[remote] the returned image through each codec")
        results["image_codecs"] = image_codec_table()
    why = can_build_namespaces()
    if why:
        results["skipped"] = why
        log(f"[remote] skipped: {why}")
        _write(out, results, report)
        return results
    port = 47000 + os.getpid() % 1000
    for link in opts.links:
        with network(link) as net:
            log(f"[remote] {link.name}: {net.engine_ns} {net.engine_ip} <-> {net.server_ns} {net.server_ip}")
            cells = [Cell(link, o, r, bs, codec, fif, lossy, lc, ch, sh, st, gf) for (o, r) in opts.sizes
                     for bs in opts.sets
                     for codec in opts.codecs for lossy in opts.lossy
                     for lc in (opts.lossy_codecs if lossy else ("jpeg",)) for fif in opts.in_flight
                     for ch in (opts.chunks if codec != "none" else (True,))
                     for sh in (opts.shuffle if codec != "none" else (True,))
                     for st in (opts.streamed if codec != "none" and ch else ("both",)) for gf in opts.game_fps]
            servers: dict[tuple[int, bool, bool, str], Server] = {}
            try:
                samples: dict[Cell, list[dict[str, Any]]] = {c: [] for c in cells}
                for rnd in range(opts.repeat):  # rounds interleave the cells: drift hits every cell alike
                    for cell in cells:
                        key = (cell.upscale, cell.chunks, cell.shuffle, cell.streamed)
                        if key not in servers:
                            servers[key] = Server(net, cell.upscale, port + len(servers), cell.chunks, cell.shuffle,
                                                  cell.streamed)
                        srv = servers[key]
                        spec = {"endpoint": srv.endpoint, "render": cell.render, "output": cell.output,
                                "buffer_set": cell.buffer_set, "codec": cell.codec, "in_flight": cell.in_flight,
                                "lossy": cell.lossy, "lossy_codec": cell.lossy_codec, "seconds": opts.seconds,
                                "game_fps": cell.game_fps,
                                "warmup": opts.warmup}
                        cpu0, load0, th0, lost0 = srv.cpu_seconds(), _loadavg(), srv.threads(), net.losses()
                        try:
                            r = _in_namespace(net, net.engine_ns, ["--engine-cell", json.dumps(spec)],
                                              timeout=opts.seconds + opts.warmup + 120)
                        except Exception as exc:  # noqa: BLE001 - one failed cell must not hide the others
                            samples[cell].append({"error": f"{type(exc).__name__}: {exc}"})
                            log(f"[remote] {cell.label}: FAILED {exc}")
                            continue
                        # the server's CPU over the whole cell (warm-up included), per frame it answered there
                        r["server_cpu_s"] = srv.cpu_seconds() - cpu0
                        r["server_threads_ms"] = {k: 1e3 * v / max(1, r["frames_all"])
                                                  for k, v in _delta(srv.threads(), th0).items()}
                        r["load"] = load0
                        r["losses"] = {k: v - lost0[k] for k, v in net.losses().items()}  # warm-up included
                        samples[cell].append(r)
                        log(f"[remote] round {rnd + 1} {cell.label}: {r['fps']:.1f} fps, p50 {r['p50_ms'] or 0:.0f} ms,"
                            f" up {r['up_bytes'] / 1e6:.2f} MB, down {r['down_bytes'] / 1e6:.2f} MB")
                for cell in cells:
                    results["cells"].append(_summarise(cell, samples[cell], net, port + 10, opts, log))
            finally:
                for srv in servers.values():
                    srv.close()
    results["load_after"] = _loadavg()
    _write(out, results, report)
    return results


def _summarise(cell: Cell, samples: list[dict[str, Any]], net: Network, port: int, opts: Options,
               log: Any) -> dict[str, Any]:
    ok = [s for s in samples if "error" not in s]
    entry: dict[str, Any] = {"link": cell.link.name, "rate_mbit": cell.link.rate_mbit, "rtt_ms": cell.link.rtt_ms,
                             "output": list(cell.output), "render": list(cell.render), "set": cell.buffer_set,
                             "codec": cell.codec, "in_flight": cell.in_flight, "lossy": cell.lossy,
                             "lossy_codec": cell.lossy_codec, "chunks": cell.chunks, "shuffle": cell.shuffle,
                             "streamed": cell.streamed, "game_fps": cell.game_fps,
                             "samples": samples}
    if not ok:
        entry["error"] = samples[0]["error"] if samples else "no samples"
        return entry
    fps = [s["fps"] for s in ok]
    med = statistics.median
    up, down = med([s["up_bytes"] for s in ok]), med([s["down_bytes"] for s in ok])
    limit_fps = cell.link.bytes_per_s / max(up, down, 1.0)
    frames = sum(s["frames"] for s in ok)
    entry.update({
        "fps": med(fps), "fps_spread": (max(fps) - min(fps)) / med(fps) if len(fps) > 1 and med(fps) else 0.0,
        "p50_ms": med([s["p50_ms"] for s in ok if s["p50_ms"] is not None] or [0.0]),
        "p99_ms": med([s["p99_ms"] for s in ok if s["p99_ms"] is not None] or [0.0]),
        "up_mb": up / 1e6, "down_mb": down / 1e6, "limit_fps": limit_fps, "fraction": med(fps) / limit_fps,
        "engine_cpu_ms_per_frame": 1e3 * sum(s["engine_cpu_s"] for s in ok) / max(1, frames),
        "server_cpu_ms_per_frame": 1e3 * sum(s["server_cpu_s"] for s in ok) / max(1, sum(s["frames_all"] for s in ok)),
        "engine_threads_ms": _merge_threads([s["engine_threads_ms"] for s in ok]),
        "server_threads_ms": _merge_threads([s["server_threads_ms"] for s in ok]),
        "write_ms": med([s["write_ms"] for s in ok if s["write_ms"] is not None] or [0.0]),
        "round_trip_ms": med([s["round_trip_ms"] for s in ok if s.get("round_trip_ms") is not None] or [0.0]),
        "server_ms": med([s["server_ms"] for s in ok if s.get("server_ms") is not None] or [0.0]),
        "compression": ok[-1]["compression"], "in_flight_limit": ok[-1]["in_flight_limit"]})
    if opts.floor:
        fif = cell.in_flight or max(1, ok[-1]["in_flight_limit"])
        try:
            f = tcp_floor(net, port, up, down, fif, min(opts.seconds, 3.0))
            entry["floor"] = {**f, "in_flight": fif, "fraction": f["fps"] / limit_fps}
            entry["vs_floor"] = entry["fps"] / f["fps"] if f["fps"] else None
        except Exception as exc:  # noqa: BLE001
            entry["floor"] = {"error": f"{type(exc).__name__}: {exc}"}
    log(f"[remote] {cell.label}: {entry['fps']:.1f} fps ({entry['fraction']:.2f} of the link's "
        f"{limit_fps:.1f} fps for these bytes), floor {entry.get('floor', {}).get('fps', 0):.1f} fps")
    return entry


def _merge_threads(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per thread name, the median over the rounds of its CPU ms per frame (0 in a round it did not run)."""
    names = {k for r in rounds for k in r}
    return {k: statistics.median([r.get(k, 0.0) for r in rounds]) for k in sorted(names)}


def _top(threads: dict[str, float], n: int = 6) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1])[:n] if v >= 0.5)


def _write(out: Path, results: dict[str, Any], report: str = "remote") -> None:
    (out / f"{report}.json").write_text(json.dumps(results, indent=1))
    (out / f"{report}.md").write_text(markdown(results))
    if results.get("cells"):
        plot(results, out / f"{report}.png")


#: issue 19's targets for 1920x1080 output, by link rate (Mbit/s): (fps at least, p50 ms under or None)
TARGETS = {1_000: (30.0, 60.0), 10_000: (60.0, None)}


def target_verdicts(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 19's target for each 1920x1080 cell on a link that has one, judged on every round (``of_repeats``): a
    round meets it with at least the target's fps and, where one is set, a p50 under the target's. The rounds of a
    cell run minutes apart on shared cores (one cell gave 30.8 to 38.5 fps in three rounds), so its median alone
    would pass or fail by chance."""
    out = []
    for c in res.get("cells", []):
        target = TARGETS.get(c.get("rate_mbit", 0))
        if "error" in c or target is None or tuple(c["output"]) != (1920, 1080):
            continue
        fps_min, p50_max = target
        rounds = [(s["fps"], s["p50_ms"]) for s in c.get("samples", []) if s.get("p50_ms") is not None]
        loop = c.get("game_fps") or 0
        verdict = ""
        if loop and loop <= fps_min:  # a 60 Hz loop shows 60 frames a second at best: its fps says nothing of the link
            if p50_max is None:
                verdict = f"not judged: the {loop:g} Hz loop caps fps at {loop:g}"
            else:
                fps_min = 0.0
        ok = [fps >= fps_min and (p50_max is None or p50 < p50_max) for fps, p50 in rounds]
        out.append({"cell": c, "fps_min": fps_min, "p50_max": p50_max, "rounds": rounds,
                    "verdict": verdict or of_repeats(ok)})
    return out


def _codec_of(cell: dict[str, Any]) -> str:
    """A report cell's codec column (reports of earlier builds lack the later fields: their defaults); the codec a
    ``default`` cell's session negotiated follows it in brackets."""
    codec = cell["codec"]
    if codec == "default" and cell.get("compression"):
        codec = f"default ({cell['compression']})"
    return codec_label(codec, cell.get("lossy", 0), cell.get("lossy_codec", "jpeg"), cell.get("chunks", True),
                       cell.get("shuffle", True), _streamed_of(cell))


def _streamed_of(cell: dict[str, Any]) -> str:
    """A report cell's ``streamed`` (reports of the first streamed build said True/False for the image alone)."""
    st = cell.get("streamed", "none")
    return "output" if st is True else "none" if st is False else str(st)


def plot(res: dict[str, Any], path: Path) -> None:
    """The report as a picture: per link and size, each cell's shown fps against its p50 latency (a bar up to its
    p99), labelled with its frames in flight; where issue 19 sets a target for the link, the region that meets it
    is shaded. Throughput against latency is the trade frames in flight make, which a table hides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cells = [c for c in res["cells"] if "error" not in c]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        o, r = c["output"], c["render"]
        size = f"{o[0]}x{o[1]}" + (f" from {r[0]}x{r[1]}" if r != o else "")
        groups.setdefault((c["link"], f"{size}, {c['set']}"), []).append(c)
    if not groups:
        return
    codecs = sorted({_codec_of(c) for c in cells})
    legend_rows = -(-(len(codecs) + 3) // 3)
    ncols = min(4, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(8.0, 6.0 * ncols), 4.6 * nrows + 0.6 + 0.25 * legend_rows),
                             squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(codecs)}
    for ax, ((link, size), group) in zip(axes.flat, groups.items()):
        top = max(c["p99_ms"] for c in group) * 1.15
        right = max(c["fps"] for c in group) * 1.25
        target = TARGETS.get(group[0]["rate_mbit"]) if tuple(group[0]["output"]) == (1920, 1080) else None
        if target is not None:
            fps_min, p50_max = target
            right = max(right, fps_min * 1.2)
            ax.axvspan(fps_min, right, ymax=1.0 if p50_max is None else min(1.0, p50_max / top),
                       color="tab:green", alpha=0.12, label="issue 19 target")
        for c in group:
            codec = _codec_of(c)
            paced = bool(c.get("game_fps"))
            ax.errorbar(c["fps"], c["p50_ms"], yerr=[[0.0], [c["p99_ms"] - c["p50_ms"]]], fmt="s" if paced else "o",
                        color=colours[codec], capsize=3, markersize=6, alpha=0.9)
            fif = f"auto {c.get('in_flight_limit', 0):g}" if c["in_flight"] == 0 else str(c["in_flight"])
            ax.annotate(fif, (c["fps"], c["p50_ms"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
        ax.set_xlim(0, right)
        ax.set_ylim(0, top)
        ax.set_xlabel("fps shown")
        ax.set_ylabel("latency p50 ms (bar: to p99)")
        ax.set_title(f"{link}\n{size}", fontsize=10)
        ax.grid(alpha=0.3)
    handles: list[Any] = [plt.Line2D([], [], color=colours[k], marker="o", linestyle="", label=k) for k in codecs]
    handles += [plt.Line2D([], [], color="black", marker="o", linestyle="", label="unpaced loop"),
                plt.Line2D([], [], color="black", marker="s", linestyle="", label="game loop at its rate"),
                Patch(color="tab:green", alpha=0.12, label="issue 19 target")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"nrb bench remote, {res['started']} (labels: frames in flight)", fontsize=10)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, (0.25 * legend_rows + 0.15) / height, 1, 1 - 0.45 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Remote links (`nrb bench remote`)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']}; started "
             f"{res['started']}. Load average (1/5/15 min) before: {res.get('load_before')}, after: "
             f"{res.get('load_after')}. Engine (libnrb) and server (`nrb serve --renderer passthrough`) share these "
             "cores, so a cell can be bound by the CPU rather than the link: the CPU columns say which side spent "
             "what.", ""]
    notes = res.get("notes") or res.get("options", {}).get("notes") or []
    if notes:  # what the person who ran it found (``--note``), kept with the numbers it is about
        lines += ["## Findings", "", *[f"- {n}" for n in notes], ""]
    if res.get("image_codecs"):
        rows = res["image_codecs"]
        lines += [f"The returned image through each codec ({rows[0]['raw_bytes'] / 1e6:.2f} MB raw: the 1920x1080 image "
                  "a cell with 960x540 G-buffers gets back), measured in one process, the codecs interleaved, "
                  "medians of 5. Encode: what `nrb serve` runs (Pillow for JPEG/WebP at libwebp method 0, "
                  f"python-lz4 / zstandard level 1); decode: {rows[0]['decoder']}'s. The link ms are those bytes "
                  "at 1 Gbit/s. FLIP of the lossy ones against the exact image: `tests/test_lossy_output.py` holds "
                  "both to 1.15x a one-step rounding.", "",
                  "| codec | bytes | ratio | encode ms | decode ms | link ms at 1 Gbit/s |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['codec']} | {r['bytes']:,.0f} | {r['ratio']:.1f} | {r['encode_ms']:.1f} | "
                  f"{r['decode_ms']:.1f} | {r['link_ms_1gbit']:.1f} |" for r in rows]
        lines.append("")
    if res.get("skipped"):
        return "\n".join([*lines, f"**Skipped:** {res['skipped']}.", ""])
    lines += ["Two network namespaces joined by a veth pair, tbf at the rate on both ends (each direction has the whole "
              "rate), the RTT added by a TUN delay line on the engine -> server path. `limit fps`: the link's rate / "
              "the larger direction's bytes per frame (what the link allows for the bytes actually sent); "
              "`fraction`: fps / limit fps. `floor`: plain TCP sockets through the same link moving the same bytes "
              "per frame each way with the same number of frames outstanding. Latency: the engine starting to write "
              "a frame's G-buffers -> its image in the engine's hands; `round trip`: libnrb's submit -> RESULT received; "
              "`server`: the renderer's `timing.total_ms` (decompressing .. the image compressed), both medians. "
              "`game loop`: `unpaced` offers a frame whenever a frame slot frees, `N Hz` a loop at its own rate "
              "offering one per tick (a tick with no free slot shows the engine's own image). CPU ms/frame: process CPU time (user + system) "
              "per frame answered, engine process (libnrb's I/O thread included) and server process. "
              f"{res['options']['seconds']:.0f} s per cell after {res['options']['warmup']:.1f} s warm-up, "
              f"{res['options']['repeat']} round(s) interleaved; `spread` = (max - min) / median fps over the rounds.",
              "",
              "| link | output | G-buffers | set | codec | in flight | game loop | fps | spread | p50 ms | p99 ms "
              "| round trip ms | server ms | MB up | MB down | limit fps | fraction | floor fps | fps / floor "
              "| engine CPU ms/frame | server CPU ms/frame | engine write ms |",
              "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
              "---:|"]
    for c in res["cells"]:
        head = (f"| {c['link']} | {c['output'][0]}x{c['output'][1]} | {c['render'][0]}x{c['render'][1]} | {c['set']} "
                f"| {_codec_of(c)} "
                f"| {c['in_flight'] or 'adaptive'}")
        if "error" in c:
            lines.append(f"{head} | {game_loop(c.get('game_fps', 0))} | failed: {c['error'][:200]} |" + " |" * 14)
            continue
        fl = c.get("floor", {})
        fif = c["in_flight"] or f"adaptive ({c['in_flight_limit']})"
        head = head.rsplit("|", 1)[0] + f"| {fif} | {game_loop(c.get('game_fps', 0))}"
        lines.append(f"{head} | {c['fps']:.1f} | {c['fps_spread']:.2f} | {c['p50_ms']:.0f} | {c['p99_ms']:.0f} | "
                     f"{c.get('round_trip_ms', 0.0):.0f} | {c.get('server_ms', 0.0):.0f} | {c['up_mb']:.2f} | {c['down_mb']:.2f} | {c['limit_fps']:.1f} | {c['fraction']:.2f} | "
                     f"{fl.get('fps', float('nan')):.1f} | {(c.get('vs_floor') or float('nan')):.2f} | "
                     f"{c['engine_cpu_ms_per_frame']:.0f} | {c['server_cpu_ms_per_frame']:.0f} | {c['write_ms']:.1f} |")
    judged = target_verdicts(res)
    if judged:
        lines += ["", "Issue 19's targets for 1920x1080 output, judged on every round: `met` when each round reaches "
                  "the fps (and a p50 under the bound, where one is set), `not met` when none does, `no verdict` when "
                  "the rounds fall on both sides.", "",
                  "| link | G-buffers | codec | in flight | game loop | target | rounds (fps, p50 ms) | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for v in judged:
            c = v["cell"]
            goal = ", ".join(([f">= {v['fps_min']:g} fps"] if v["fps_min"] else [])
                             + ([f"p50 < {v['p50_max']:g} ms"] if v["p50_max"] is not None else []))
            rounds = ", ".join(f"{fps:.1f} / {p50:.1f}" for fps, p50 in v["rounds"])
            lines.append(f"| {c['link']} | {c['render'][0]}x{c['render'][1]} {c['set']} | {_codec_of(c)} | "
                         f"{c['in_flight'] or 'adaptive'} | {game_loop(c.get('game_fps', 0))} | {goal} | {rounds} | "
                         f"{v['verdict']} |")
    lines += ["", "CPU ms per frame by thread (the top six; `python` is a process's main thread (the engine's: writing "
              "the G-buffers), `nrb-io` libnrb's or the server's I/O thread, `nrb-pool` libnrb's pool (compressing "
              "frames, decompressing or decoding images; protocol section 6.3.2; `nrb-compress` in earlier builds, "
              "compressing only, with the I/O thread helping), `nrb-render-N` a server render "
              "worker (the 2x upscale, a JPEG/WebP encode, a codec's work when not chunked), `nrb-chunk` the "
              "server's chunk threads (decompressing a frame's chunks, compressing the image's), `ZMQbg/IO/0` "
              "ZeroMQ's I/O thread):", "",
              "| link | output | G-buffers | set | codec | in flight | game loop | engine threads | server threads |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in res["cells"]:
        if "error" in c:
            continue
        lines.append(f"| {c['link']} | {c['output'][0]}x{c['output'][1]} | {c['render'][0]}x{c['render'][1]} | "
                     f"{c['set']} | {_codec_of(c)} | {c['in_flight'] or 'adaptive'} | "
                     f"{game_loop(c.get('game_fps', 0))} | {_top(c['engine_threads_ms'])} | "
                     f"{_top(c['server_threads_ms'])} |")
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI
def _size_pair(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``1920x1080`` or ``1920x1080/960x540`` (output / render)."""
    parts = [tuple(int(v) for v in p.lower().split("x")) for p in text.split("/")]
    if len(parts) == 1:
        parts.append(parts[0])
    o, r = parts[0], parts[1]
    if len(o) != 2 or len(r) != 2 or o[0] % r[0] or o[1] % r[1] or o[0] // r[0] != o[1] // r[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: WxH or OUTWxOUTH/RENDERWxRENDERH with an integer upscale")
    return (o[0], o[1]), (r[0], r[1])


def _link(text: str) -> Link:
    """``RATE_MBIT`` or ``RATE_MBIT:RTT_MS``."""
    rate, _, rtt = text.partition(":")
    r = int(rate)
    ms = float(rtt) if rtt else 0.0
    name = (f"{r // 1000} Gbit/s" if r % 1000 == 0 else f"{r} Mbit/s") + (f", {ms:g} ms RTT" if ms else "")
    return Link(name, r, ms)


def add_arguments(p: Any) -> None:
    p.add_argument("--out", default="bench", help="output directory (remote.json, remote.md)")
    p.add_argument("--quick", action="store_true", help="a small matrix, short cells")
    p.add_argument("--link", action="append", type=_link, metavar="MBIT[:RTT_MS]",
                   help="links to shape (default 10000 and 1000:2)")
    p.add_argument("--size", action="append", type=_size_pair, metavar="WxH[/WxH]",
                   help="output size, optionally /render size (default 1920x1080, 1920x1080/960x540, 960x540)")
    p.add_argument("--set", action="append", choices=SETS, help="buffer sets (default both)")
    p.add_argument("--codec", action="append", choices=CODEC_CHOICES,
                   help="codecs (default none, lz4, zstd; 'default': left unset, as the plugins leave it)")
    p.add_argument("--in-flight", action="append", type=int, metavar="N", help="frames in flight, 0 = adaptive")
    p.add_argument("--lossy", action="append", type=int, metavar="Q",
                   help="let the image come back as JPEG at quality Q (protocol 6.3.1); 0 = exact (default)")
    p.add_argument("--lossy-codec", action="append", choices=("jpeg", "webp"),
                   help="the lossy image codec of --lossy (default jpeg; repeat for both)")
    p.add_argument("--chunks", action="append", choices=("on", "off"),
                   help="the server accepts chunked payloads (protocol 6.3.2): on (default), off (nrb serve "
                        "--no-chunks, one frame per buffer); both: an interleaved A/B of every codec cell")
    p.add_argument("--shuffle", action="append", choices=("on", "off"),
                   help="the server accepts byte-shuffled payloads (protocol 6.3.3): on (default), off (nrb serve "
                        "--no-shuffle, as before it); both: an interleaved A/B of every codec cell")
    p.add_argument("--streamed", action="append", choices=("both", "output", "frames", "none"),
                   help="what the server takes and sends in PART messages (protocol 6.3.4-6.3.5): both (default), "
                        "output (its image only: nrb serve --no-streamed-frames), frames (the G-buffers only: "
                        "--no-streamed-output), none (both flags, as before); several: an interleaved A/B of every "
                        "chunked codec cell")
    p.add_argument("--game-fps", action="append", type=int, metavar="HZ",
                   help="the engine loop's rate: a frame offered per tick (0 = unpaced, the default: one whenever "
                        "a frame slot frees); repeat for an interleaved A/B")
    p.add_argument("--no-image-codecs", action="store_true", help="skip the image codec table")
    p.add_argument("--note", action="append", default=[], help="a finding to print with the report (repeatable)")
    p.add_argument("--report", default="remote", help="report name: OUT/REPORT.json and .md (default remote)")
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell (default 4)")
    p.add_argument("--repeat", type=int, default=1, help="rounds over the matrix, interleaved (default 1)")
    p.add_argument("--no-floor", action="store_true", help="skip the raw-TCP floor")


def main(args: Any) -> int:
    if args.quick and not any((args.link, args.size, args.set, args.codec, args.in_flight)):
        run(args.out, quick=True)
        return 0
    opts = Options(links=tuple(args.link or LINKS), sizes=tuple(args.size or SIZES), sets=tuple(args.set or SETS),
                   codecs=tuple(args.codec or CODECS), in_flight=tuple(args.in_flight or IN_FLIGHT),
                   lossy=tuple(args.lossy or (0,)), lossy_codecs=tuple(args.lossy_codec or ("jpeg",)),
                   chunks=tuple(c == "on" for c in (args.chunks or ["on"])),
                   shuffle=tuple(c == "on" for c in (args.shuffle or ["on"])),
                   streamed=tuple(args.streamed or ["both"]),
                   game_fps=tuple(args.game_fps or (0,)), image_codecs=not args.no_image_codecs, notes=list(args.note), seconds=args.seconds,
                   repeat=max(1, args.repeat),
                   floor=not args.no_floor)
    res = run(args.out, options=opts, report=args.report)
    return 0 if not res.get("skipped") else 0


def register(bench_sub: Any) -> None:
    """Add ``remote`` to the subparsers of ``nrb bench``."""
    p = bench_sub.add_parser("remote", help="libnrb <-> nrb serve across two namespaces on a shaped link (root)",
                             description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=main)


def _child(argv: list[str]) -> int:
    """The parts that run inside a namespace: one JSON line on stdout."""
    what, spec = argv[0], json.loads(argv[1])
    fn = {"--engine-cell": engine_cell, "--tcp-sink": tcp_sink, "--tcp-source": tcp_source}[what]
    print(json.dumps(fn(spec)), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] in ("--engine-cell", "--tcp-sink", "--tcp-source"):
        sys.exit(_child(sys.argv[1:]))
    ap = argparse.ArgumentParser(prog="python -m nrb_bench.remote")
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
