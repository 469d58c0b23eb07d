"""The soak's fault rows (``nrb bench soak --path overload --path hostile``), issue 16 items 1-3.

* **overload**: the renderer takes ``RENDER_MS`` per frame; two engines send a frame with one event every
  ``RENDER_MS / 2`` for the row's duration (60 s; 10 s with ``--quick``): the game through libnrb (which keeps to
  the server's ``max_in_flight`` and carries the events of frames it could not send), and a raw engine
  (``bridge.client.Client``) that ignores ``max_in_flight`` altogether. Half-way the renderer stalls for
  ``STALL_S`` seconds, so the raw engine gets far more than ``max_in_flight`` + 256 frames ahead and the server
  must hold its input (back-pressure) instead of dropping its events. Checked from the server's own record
  (``--record``): every event of each engine applied exactly once, in order; every raw FRAME answered exactly once;
  no session closed. Reported with the answers' mix and the server's RSS (start, peak, end).
* **hostile** (the shared-memory part): while a libnrb game renders through shared memory, a hostile engine opens a
  shared-memory session again and again, renders one frame, truncates its pool to 0 and sends another FRAME. The
  server must answer that FRAME with an ERROR and close the session with a BYE each time (no SIGBUS), keep the
  same process, keep the game rendering, and not grow (RSS start and end, descriptors held).
* **hostile** (memory and sessions, items 5 and 6): oversized HELLOs and zstd-bomb FRAMEs against the default memory
  budgets, one connection asking for 16 sessions, and that connection vanishing without a BYE while the server is
  full: refusals counted, how soon the next engine gets in (the idle timeout is 30 s), server RSS and VmHWM
  (``hostile_memory_and_sessions``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from nrb_bench.soak import memory_mb

RENDER_MS = 20.0
STALL_S = 4.0
SIZE = (64, 32)
MAX_IN_FLIGHT = 2


def _serve(args: list[str], log: Path) -> tuple[subprocess.Popen[str], str]:
    from bridge.commands.serve import spawn_server

    return spawn_server([*args, "--max-in-flight", str(MAX_IN_FLIGHT)], log)


def _stop(proc: subprocess.Popen[str]) -> int:
    from bridge.commands.serve import stop_server

    return stop_server(proc)


def _pixels() -> list[Any]:
    from bridge.protocol import Buffer

    w, h = SIZE
    return [Buffer.from_array("hudless_color", "rgba8_srgb", np.full((h, w, 4), 77, np.uint8))]


def _game(endpoint: str, transport: str) -> Any:
    from bridge import _native

    return _native.Client(endpoint=endpoint, transport=transport, render_size=SIZE,
                          buffers=[("hudless_color", "rgba8_srgb")], deadline_ms=100.0, engine="soak-faults",
                          connect_timeout_ms=1000, handshake_timeout_ms=2000, server_timeout_ms=2000)


def _wait_connected(c: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while c.stats()["state"] != "connected":
        if time.monotonic() > end:
            raise RuntimeError(f"libnrb did not connect: {c.last_error}")
        time.sleep(0.01)


class _RssSampler:
    """The server's VmRSS every 0.5 s on a thread: start (first sample), peak, end (last sample)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = memory_mb(self.pid)[0]
            if rss:
                self.samples.append(rss)
            self._stop.wait(0.5)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._t.join()
        s = self.samples or [0.0]
        return {"start_mb": s[0], "peak_mb": max(s), "end_mb": s[-1]}


def _answered_events(capture: Path) -> dict[int, list[str]]:
    from bridge.capture import CaptureReader

    out: dict[int, list[str]] = {}
    with CaptureReader(capture) as r:
        for f in r.frames():
            if f.result is not None:
                frame = f.decode()
                out.setdefault(frame.session, []).extend(e.name for e in frame.events)
    return out


def overload(seconds: float, work: Path) -> dict[str, Any]:
    """The overload row (module docstring)."""
    from bridge.client import Client
    from bridge.protocol import BufferSpec, Bye, Error, Event, Result

    stall, cap = work / "stall", work / "overload.nrbcap"
    proc, endpoint = _serve(["--renderer", "nrb_bench.paced_renderer:make", "-o", f"render_ms={RENDER_MS:g}",
                             "-o", f"stall_file={stall}", "--record", str(cap)], work / "overload.log")
    rss = _RssSampler(proc.pid)
    answers: dict[int, str] = {}
    sent: list[int] = []
    raw_fired: list[str] = []
    game_fired: list[str] = []
    byes = 0
    pixels = _pixels()
    img = pixels[0].array()

    def collect(raw: Client, timeout: float) -> None:
        nonlocal byes
        while True:
            try:
                m = raw.recv(timeout=timeout)
            except TimeoutError:
                return
            if isinstance(m, Bye):
                byes += 1
            elif isinstance(m, (Result, Error)) and m.frame is not None:
                if m.frame in answers:
                    answers[-m.frame] = "twice"
                answers[m.frame] = m.status if isinstance(m, Result) else m.name

    t0 = time.monotonic()
    try:
        with Client(endpoint) as raw:
            c = _game(endpoint, "inline")
            try:
                _wait_connected(c)
                raw_session = raw.hello(SIZE, [BufferSpec("hudless_color", "rgba8_srgb")]).session
                game_session = c.stats()["session"]
                period = RENDER_MS / 2e3
                stall_at, stall_end = seconds / 2, seconds / 2 + STALL_S
                while (now := time.monotonic() - t0) < seconds:
                    if stall_at <= now < stall_end:
                        stall.touch()
                    elif stall.exists():
                        stall.unlink()
                    t = time.monotonic()
                    c.begin()
                    c.tag_buffer("hudless_color", "rgba8_srgb", img)
                    game_fired.append(f"g{len(game_fired)}")
                    c.fire_event(game_fired[-1], {})
                    c.submit()
                    c.acquire_result()
                    raw_fired.append(f"r{len(raw_fired)}")
                    sent.append(raw.send_frame(pixels, events=[Event(raw_fired[-1])], deadline_ms=1000.0))
                    collect(raw, 0)
                    time.sleep(max(0.0, period - (time.monotonic() - t)))
                stall.unlink(missing_ok=True)
                end = time.monotonic() + 30
                while (len(answers) < len(sent) or c.stats()["events_pending"]) and time.monotonic() < end:
                    c.begin()  # frames without events carry what libnrb still holds
                    c.tag_buffer("hudless_color", "rgba8_srgb", img)
                    c.submit()
                    c.acquire_result()
                    collect(raw, 0.01)
                stats = dict(c.stats())
            finally:
                c.close()
            raw.bye()
    finally:
        stall.unlink(missing_ok=True)
        memory = rss.stop()
        _stop(proc)
    events = _answered_events(cap)
    cap.unlink(missing_ok=True)
    mix: dict[str, int] = {}
    for frame, what in answers.items():
        if frame > 0:
            mix[what] = mix.get(what, 0) + 1
    return {
        "seconds": seconds, "render_ms": RENDER_MS, "send_period_ms": RENDER_MS / 2, "stall_s": STALL_S,
        "max_in_flight": MAX_IN_FLIGHT,
        "raw": {"frames": len(sent), "answered_once": sorted(f for f in answers if f > 0) == sent
                and not any(f < 0 for f in answers), "answers": mix, "byes": byes,
                "events_fired": len(raw_fired), "events_exactly_once_in_order": events.get(raw_session) == raw_fired},
        "game": {"frames": len(game_fired), "frames_sent": stats["frames_sent"],
                 "results_received": stats["results_received"], "reconnects": stats["reconnects"],
                 "events_fired": len(game_fired),
                 "events_exactly_once_in_order": events.get(game_session) == game_fired},
        "server_rss": memory,
    }


def hostile_shm(attempts: int, work: Path) -> dict[str, Any]:
    """The shared-memory part of the hostile-peer row (module docstring)."""
    from bridge.client import Client
    from bridge.protocol import Buffer, BufferSpec, Bye, Error, ShmPool, ShmRef

    proc, endpoint = _serve(["--renderer", "passthrough", "--endpoint", f"ipc://{work}/hostile.sock"],
                            work / "hostile.log")
    pid = proc.pid
    w, h = SIZE
    slot = 1 << 16
    img = _pixels()[0].array()
    errors = byes = 0
    stop = threading.Event()
    shown = [0]

    def play(c: Any) -> None:
        last = -1
        while not stop.is_set():
            c.begin()
            c.tag_buffer("hudless_color", "rgba8_srgb", img)
            c.submit()
            got = c.acquire_result(with_info=True)
            if got is not None and got[1]["frame_id"] != last:
                last = got[1]["frame_id"]
                shown[0] += 1
            time.sleep(0.004)

    game = _game(endpoint, "shm")
    player = threading.Thread(target=play, args=(game,), daemon=True)
    try:
        _wait_connected(game)
        player.start()
        time.sleep(1.0)
        start_mb, fds_start = memory_mb(pid)[0], len(os.listdir(f"/proc/{pid}/fd"))
        shown_start = shown[0]
        for _ in range(attempts):
            name = f"nrb-soak-{os.getpid()}-{secrets.token_hex(4)}"
            shm = shared_memory.SharedMemory(name=name, create=True, size=2 * slot)
            try:
                with Client(endpoint) as bad:
                    welcome = bad.hello(SIZE, [BufferSpec("hudless_color", "rgba8_srgb")], capabilities=["shm"],
                                        shm=ShmPool("/" + name, 2, slot))
                    shm.unlink()
                    ref = [Buffer("hudless_color", "rgba8_srgb", w, h, w * 4, None, shm=ShmRef(0, 0))]
                    if "shm" not in welcome.capabilities or bad.render(ref, result_slot=1).status != "ok":
                        raise RuntimeError("the hostile engine's pool was not usable")
                    os.ftruncate(shm._fd, 0)  # type: ignore[attr-defined]
                    fid = bad.send_frame(ref, result_slot=1)
                    for _ in range(2):
                        m = bad.recv(timeout=10)
                        errors += isinstance(m, Error) and m.frame == fid
                        byes += isinstance(m, Bye) and m.session == welcome.session
            finally:
                shm.close()
        time.sleep(1.0)
        end_mb, fds_end = memory_mb(pid)[0], len(os.listdir(f"/proc/{pid}/fd"))
        shown_during = shown[0] - shown_start
    finally:
        stop.set()
        if player.is_alive():
            player.join(5)
        game.close()
        alive = proc.poll() is None
        _stop(proc)
    return {"attempts": attempts, "errors": errors, "byes": byes, "server_alive": alive, "server_pid_kept": alive,
            "game_frames_shown_meanwhile": shown_during,
            "server_rss": {"start_mb": start_mb, "end_mb": end_mb}, "server_fds": {"start": fds_start,
                                                                                   "end": fds_end}}


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def hostile_memory_and_sessions(attempts: int, work: Path) -> dict[str, Any]:
    """The memory and session part of the hostile-peer row (issue 16 items 5 and 6), against ``nrb serve`` with its
    default memory budgets and ``--max-sessions 5``, while a good engine renders a frame between attempts. Each
    attempt: a HELLO of 32 buffers at 2048² (must be LIMIT_EXCEEDED); a session that offered one 2048² buffer sends
    a FRAME of 32 zstd buffers that decompress to 1 GiB (LIMIT_EXCEEDED, nothing decompressed); one connection asks
    for 16 sessions (it gets ``--max-sessions-per-peer``, the rest OVERLOADED) and then vanishes without a BYE, and a
    new engine asks until it gets in: how long its slot took to come back (the idle timeout is 30 s)."""
    import msgpack
    import zstandard

    from bridge.client import Client, RemoteError
    from bridge.protocol import Buffer, BufferSpec, Error, Frame, header_map

    proc, endpoint = _serve(["--renderer", "passthrough", "--max-sessions", "5"], work / "hostile-peers.log")
    pid = proc.pid
    big = (2048, 2048)
    specs = [BufferSpec("albedo", "rgba8_srgb")] + [BufferSpec(f"x_pad{i:02d}", "rgba8") for i in range(31)]
    zeros = np.zeros((big[1], big[0], 4), np.float16)
    packed = zstandard.ZstdCompressor(write_content_size=True).compress(zeros.tobytes())
    names = ["albedo"] + [f"x_pad{i:02d}" for i in range(31)]
    bomb = [Buffer(n, "rgba16f", big[0], big[1], big[0] * 8, compression="zstd") for n in names]
    counts = {"hello_refused": 0, "frames_refused": 0, "hog_welcomed": 0, "hog_overloaded": 0, "good_ok": 0,
              "newcomer_refused_while_full": 0}
    waits: list[float] = []
    sampler = _RssSampler(pid)
    try:
        with Client(endpoint, timeout=20) as good:
            good.hello(SIZE, [BufferSpec("hudless_color", "rgba8_srgb")])
            for _ in range(attempts):
                with Client(endpoint, timeout=20) as bad:
                    try:
                        bad.hello(big, specs, capabilities=["zstd"])
                    except RemoteError as exc:
                        counts["hello_refused"] += exc.error.name == "LIMIT_EXCEEDED"
                    bad.hello(big, specs[:1], capabilities=["zstd"])
                    fid = bad.next_frame
                    bad.next_frame += 1
                    head = msgpack.packb(header_map(Frame(bad.session or 0, fid, fid, 0.016, 5000.0, bomb)))
                    bad.send_raw([head] + [packed] * len(bomb))
                    m = bad.recv(timeout=30)
                    counts["frames_refused"] += isinstance(m, Error) and m.name == "LIMIT_EXCEEDED"
                    bad.bye()
                hog = Client(endpoint, timeout=20)
                for _ in range(16):
                    try:
                        hog.hello(SIZE, [BufferSpec("hudless_color", "rgba8_srgb")])
                        counts["hog_welcomed"] += 1
                    except RemoteError as exc:
                        counts["hog_overloaded"] += exc.error.name == "OVERLOADED"
                with Client(endpoint, timeout=20) as newcomer:
                    try:  # the server is full: the good engine's session and the hog's four
                        newcomer.hello(SIZE, [BufferSpec("hudless_color", "rgba8_srgb")])
                        newcomer.bye()
                    except RemoteError as exc:
                        counts["newcomer_refused_while_full"] += exc.error.name == "OVERLOADED"
                    hog.close()  # gone without a BYE, its sessions still open
                    t0 = time.monotonic()
                    while True:
                        try:
                            newcomer.hello(SIZE, [BufferSpec("hudless_color", "rgba8_srgb")])
                            break
                        except RemoteError:
                            if time.monotonic() - t0 > 60:
                                raise
                            time.sleep(0.02)
                    waits.append(time.monotonic() - t0)
                    newcomer.bye()
                counts["good_ok"] += good.render(_pixels()).status == "ok"
            good.bye()
        time.sleep(0.5)
        peak = _peak_rss_mb(pid)
    finally:
        rss = sampler.stop()
        alive = proc.poll() is None
        _stop(proc)
    waits.sort()
    return {"attempts": attempts, **counts, "server_alive": alive,
            "slot_back_s": {"median": waits[len(waits) // 2] if waits else None, "max": waits[-1] if waits else None},
            "server_rss": {**rss, "vmhwm_mb": peak}}


def run_rows(paths: tuple[str, ...], quick: bool) -> dict[str, Any]:
    """The fault rows named in ``paths`` (``overload``, ``hostile``)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nrb-soak-faults-") as tmp:
        work = Path(tmp)
        if "overload" in paths:
            sys.stderr.write("[soak overload] two engines at twice the renderer's rate...\n")
            out["overload"] = overload(10.0 if quick else 60.0, work)
        if "hostile" in paths:
            sys.stderr.write("[soak hostile] engines that shrink their shared memory...\n")
            out["hostile"] = {"shm_shrink": hostile_shm(20 if quick else 200, work)}
            sys.stderr.write("[soak hostile] oversized HELLOs and FRAMEs, a session hog that vanishes...\n")
            out["hostile"]["memory_sessions"] = hostile_memory_and_sessions(5 if quick else 30, work)
    return out


def markdown(rows: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    o = rows.get("overload")
    if o:
        raw, game, m = o["raw"], o["game"], o["server_rss"]
        lines += ["", f"## Overload: two engines at twice the renderer's rate for {o['seconds']:g} s", "",
                  f"Renderer {o['render_ms']:g} ms per frame (stalled {o['stall_s']:g} s half-way), a frame with one "
                  f"event every {o['send_period_ms']:g} ms from each engine, `--max-in-flight {o['max_in_flight']}`.",
                  "", "| engine | frames | answers | events fired | every event once, in order | sessions closed |",
                  "|---|---:|---|---:|---|---:|",
                  f"| raw (ignores max_in_flight) | {raw['frames']} | "
                  + ", ".join(f"{k} {v}" for k, v in sorted(raw["answers"].items()))
                  + f" (each frame once: {'yes' if raw['answered_once'] else '**no**'}) | {raw['events_fired']} | "
                  f"{'yes' if raw['events_exactly_once_in_order'] else '**no**'} | {raw['byes']} |",
                  f"| libnrb game | {game['frames']} | {game['frames_sent']} sent, {game['results_received']} "
                  f"results | {game['events_fired']} | {'yes' if game['events_exactly_once_in_order'] else '**no**'}"
                  f" | {game['reconnects']} reconnects |",
                  "", f"Server RSS: start {m['start_mb']:.1f} MB, peak {m['peak_mb']:.1f} MB, end {m['end_mb']:.1f} MB."]
    hs = rows.get("hostile", {}).get("shm_shrink")
    if hs:
        lines += ["", "## Hostile peer: shared memory shrunk under the server", "",
                  f"{hs['attempts']} engines each truncated their pool to 0 after WELCOME and sent a FRAME: "
                  f"{hs['errors']} ERRORs and {hs['byes']} BYEs came back; the server "
                  f"{'kept running (same process)' if hs['server_alive'] else '**died**'}, the libnrb game beside "
                  f"them showed {hs['game_frames_shown_meanwhile']} frames meanwhile. Server RSS "
                  f"{hs['server_rss']['start_mb']:.1f} → {hs['server_rss']['end_mb']:.1f} MB, descriptors "
                  f"{hs['server_fds']['start']} → {hs['server_fds']['end']}."]
    hm = rows.get("hostile", {}).get("memory_sessions")
    if hm:
        n, m, back = hm["attempts"], hm["server_rss"], hm["slot_back_s"]
        lines += ["", "## Hostile peer: memory and session slots (default budgets, `--max-sessions 5`)", "",
                  "| attempt, each of " + str(n) + " | answered as required |", "|---|---|",
                  f"| HELLO of 32 buffers at 2048² | LIMIT_EXCEEDED {hm['hello_refused']} / {n} |",
                  f"| FRAME of 32 zstd buffers decompressing to 1 GiB | LIMIT_EXCEEDED {hm['frames_refused']} / {n} |",
                  f"| one connection asks for 16 sessions | WELCOME {hm['hog_welcomed']}, OVERLOADED "
                  f"{hm['hog_overloaded']} (cap 4 each) |",
                  f"| a new engine asks while the server is full | OVERLOADED {hm['newcomer_refused_while_full']} / {n} |",
                  f"| the hog vanishes without BYE; the new engine asks again | in after median "
                  f"{(back['median'] or 0) * 1e3:.0f} ms, max {(back['max'] or 0) * 1e3:.0f} ms (idle timeout 30 s) |",
                  f"| a good engine renders between attempts | ok {hm['good_ok']} / {n} |",
                  "", f"Server {'kept running' if hm['server_alive'] else '**died**'}; RSS start {m['start_mb']:.1f} "
                  f"MB, peak {m['peak_mb']:.1f} MB (VmHWM {m['vmhwm_mb']:.1f} MB), end {m['end_mb']:.1f} MB."]
    return lines
