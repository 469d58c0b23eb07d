"""``nrb serve`` and ``nrb record``.

``nrb record CAPTURE [serve options]`` is ``nrb serve --record CAPTURE``: recording happens *in* the server, which
is what makes a capture replayable bit for bit — the server records each frame as it processes it, the hooks
source in effect (including hot reloads) and a digest of every style map it built. The engine connects to it like
to any server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from bridge.hooks import HookLoadError
from bridge.renderer import parse_options
from bridge.renderers.ort_session import DeviceError, parse_device, select_device
from bridge.server import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SESSION_BYTES,
    DEFAULT_MAX_SESSIONS_PER_PEER,
    DEFAULT_MAX_TOTAL_BYTES,
    Server,
    ServerConfig,
)

log = logging.getLogger("nrb.serve")


def _positive(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return v


def _device(text: str) -> str:
    try:
        return str(parse_device(text))
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _on_onnx_runtime(renderer: str) -> bool:
    """Whether ``--device`` applies: the renderers that run on ONNX Runtime (``neural`` and ``.onnx`` models)."""
    return renderer == "neural" or renderer.endswith(".onnx")


def renderer_options_with_device(renderer: str, options: dict[str, Any], device: str) -> dict[str, Any]:
    """The renderer options with ``device`` added for the ONNX Runtime renderers (an explicit ``-o device=...``
    wins). An explicit ``--device`` other than ``auto`` for a renderer that takes no device is an error rather than
    silently ignored."""
    if _on_onnx_runtime(renderer):
        return {**options, "device": options.get("device", device)}
    if device != "auto":
        raise ValueError(f"--device {device}: renderer {renderer!r} does not run on ONNX Runtime; --device applies "
                         "to the neural renderer and .onnx models (pass a device to your own renderer with -o)")
    return options


def add_server_arguments(p: argparse.ArgumentParser, *, record: bool = True) -> None:
    """The options ``serve`` and ``record`` share."""
    p.add_argument("--renderer", default="neural", metavar="NAME|MODEL.onnx|MODULE:FACTORY",
                   help="renderer: a registered name (deferred, passthrough, ...), an ONNX model whose inputs are "
                        "named after protocol buffers, or module:factory / file.py:factory (default: neural, the shipped model)")
    p.add_argument("-o", "--renderer-option", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for the renderer factory, JSON value (e.g. -o 'light_dir=[0,1,0.5]')")
    p.add_argument("--device", type=_device, default="auto", metavar="auto|cpu|cuda[:N]|tensorrt[:N]",
                   help="where the neural and .onnx renderers run (ONNX Runtime): auto (default) is the first CUDA "
                        "GPU when onnxruntime-gpu and a device are there, else the CPU; cuda[:N] or tensorrt[:N] "
                        "refuse to start without one")
    p.add_argument("--hooks", metavar="FILE", help="style hooks file (@on(event) / @every_frame), hot-reloaded")
    p.add_argument("--styles", metavar="FILE.toml",
                   help="style file: looks the game defines (parameters, .cube LUTs), hot-reloaded (docs/server.md)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything else needs CurveZMQ or --insecure)")
    p.add_argument("--port", type=int, default=5555, help="TCP port (0: pick a free one and print it)")
    p.add_argument("--endpoint", help="full ZeroMQ endpoint instead of --host/--port (tcp://, ipc://)")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening beyond loopback without CurveZMQ (unauthenticated, unencrypted)")
    p.add_argument("--curve-secret", metavar="FILE", help="server CurveZMQ secret key (.key_secret)")
    p.add_argument("--allow-dir", metavar="DIR", help="directory of allowed client public keys (.key)")
    p.add_argument("--max-sessions", type=int, default=16, help="concurrent sessions (default 16)")
    p.add_argument("--max-in-flight", type=int, default=4, help="frames a session may have queued (1..64, default 4)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest render/output size in pixels a session may ask for (default {DEFAULT_MAX_PIXELS}, "
                        "4K UHD)")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES, metavar="BYTES",
                   help="memory budget of one FRAME, all its buffers together (default 256 MiB; docs/security.md)")
    p.add_argument("--max-session-bytes", type=int, default=DEFAULT_MAX_SESSION_BYTES, metavar="BYTES",
                   help="memory budget of one session: two frames and its image (default 768 MiB)")
    p.add_argument("--max-total-bytes", type=int, default=DEFAULT_MAX_TOTAL_BYTES, metavar="BYTES",
                   help="memory budget of all sessions together (default 4 GiB)")
    p.add_argument("--max-sessions-per-peer", type=int, default=DEFAULT_MAX_SESSIONS_PER_PEER,
                   help=f"sessions one connection, and one CurveZMQ key, may hold (default "
                        f"{DEFAULT_MAX_SESSIONS_PER_PEER})")
    p.add_argument("--max-message-size", type=int, metavar="BYTES",
                   help="ZMQ_MAXMSGSIZE: a peer sending a larger message part is disconnected by libzmq before it "
                        "is allocated (default: largest allowed buffer + 64 KiB header)")
    p.add_argument("--idle-timeout", type=_positive, default=30.0, help="seconds before a quiet session expires")
    p.add_argument("--workers", type=int, default=0,
                   help="render workers: frames of different sessions render in parallel, earliest deadline first "
                        "(default 0: one per core)")
    p.add_argument("--worker-threads", type=int, default=0,
                   help="renderer threads per frame (ONNX Runtime intra-op; default 0: adaptive, the cores shared "
                        "among the workers busy when the frame starts: all of them for a lone busy session)")
    p.add_argument("--doorbell", action=argparse.BooleanOptionalAction, default=True,
                   help="accept the engine's doorbell FIFOs for shared-memory sessions (protocol section 7.1); "
                        "--no-doorbell keeps every header on ZeroMQ")
    p.add_argument("--chunks", action=argparse.BooleanOptionalAction, default=True,
                   help="accept compressed payloads in parallel chunks from engines that offer them (protocol section "
                        "6.3.2); --no-chunks answers as a server that predates them (one frame per buffer)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                   help="accept byte-shuffled lz4/zstd payloads from engines that offer them (protocol section 6.3.3); "
                        "--no-shuffle answers as a server that predates them")
    p.add_argument("--streamed-output", action=argparse.BooleanOptionalAction, default=True,
                   help="send a compressed image's chunks in PART messages as each is compressed, ahead of its "
                        "RESULT, to engines that offer it (protocol section 6.3.4); --no-streamed-output sends the "
                        "image in one message, as a server that predates it")
    p.add_argument("--streamed-frames", action=argparse.BooleanOptionalAction, default=True,
                   help="take a FRAME's compressed buffers in PART messages ahead of the FRAME from engines that "
                        "offer it, decompressing each chunk as it arrives (protocol section 6.3.5); "
                        "--no-streamed-frames answers as a server that predates it")
    p.add_argument("--metrics", type=int, metavar="PORT", help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--status", action=argparse.BooleanOptionalAction, default=None,
                   help="live status line on stderr (default: when stderr is a terminal)")
    if record:
        p.add_argument("--record", metavar="CAPTURE", help="record every session to this capture file")


def config_from_args(args: argparse.Namespace, record: str | None = None) -> ServerConfig:
    status = args.status if args.status is not None else sys.stderr.isatty()
    return ServerConfig(
        renderer=args.renderer,
        renderer_options=renderer_options_with_device(args.renderer, parse_options(args.renderer_option),
                                                      args.device),
        host=args.host,
        port=args.port, endpoint=args.endpoint, insecure=args.insecure, curve_secret=args.curve_secret,
        allow_dir=args.allow_dir, hooks=args.hooks, styles=args.styles, max_sessions=args.max_sessions,
        max_in_flight=args.max_in_flight, max_pixels=args.max_pixels, max_message_bytes=args.max_message_size,
        max_frame_bytes=args.max_frame_bytes, max_session_bytes=args.max_session_bytes,
        max_total_bytes=args.max_total_bytes, max_sessions_per_peer=args.max_sessions_per_peer,
        idle_timeout=args.idle_timeout,
        record=record if record is not None else getattr(args, "record", None), metrics_port=args.metrics,
        status=status, doorbell=args.doorbell, chunks=args.chunks, shuffle=args.shuffle,
        streamed_output=args.streamed_output, streamed_frames=args.streamed_frames, workers=args.workers,
        worker_threads=args.worker_threads,
    )


def serve(config: ServerConfig) -> int:
    """Run a server in this process until SIGINT/SIGTERM; print the endpoint first (scripts parse that line)."""
    try:
        with warnings.catch_warnings(record=True) as caught:  # the --insecure warning, as one plain line
            warnings.simplefilter("always")
            try:
                server = Server(config)
                endpoint = server.bind()
            finally:
                for w in caught:
                    print(f"nrb serve: WARNING: {w.message}", file=sys.stderr, flush=True)
    except (ValueError, TypeError, HookLoadError, OSError, RuntimeError) as exc:
        # RuntimeError covers bridge.security.SecurityError
        print(f"nrb serve: {exc}", file=sys.stderr)
        return 2
    extra = []
    device = config.renderer_options.get("device") if _on_onnx_runtime(config.renderer) else None
    if device is not None:
        # the renderer resolved the same request when the server probed it (select_device remembers it, including
        # an auto that fell back to the CPU), so this is the device its sessions run on
        where = select_device(str(device)).describe()
        log.info("renderer %s runs on %s", server.renderer_label, where)
        extra.append(f"on {where}")
    if server.metrics_port is not None:
        extra.append(f"metrics http://127.0.0.1:{server.metrics_port}/metrics")
    if config.record:
        extra.append(f"recording to {config.record}")
    print(f"nrb serve: listening on {endpoint} (renderer {server.renderer_label}"
          + "".join(f"; {e}" for e in extra) + ")", flush=True)
    server.serve_forever()
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"nrb serve: {exc}", file=sys.stderr)
        return 2
    return serve(cfg)


def _run_record(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args, record=args.capture)
    except ValueError as exc:
        print(f"nrb record: {exc}", file=sys.stderr)
        return 2
    return serve(cfg)


def spawn_server(args: list[str], log_path: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[str], str]:
    """Start ``nrb serve --port 0 ARGS`` as a real subprocess (stderr to ``log_path``); return it and the endpoint
    it printed. Used by ``nrb demo`` and the tests."""
    cmd = [sys.executable, "-m", "bridge.cli", "serve", "--port", "0", "--no-status", *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w")  # noqa: SIM115 - owned by the child for its lifetime
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    log_file.close()
    assert proc.stdout is not None
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line and not found:
                found.append(line.split("listening on", 1)[1].split()[0])

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start within {timeout:.0f} s; see {log_path}")
        time.sleep(0.05)
    return proc, found[0]


def stop_server(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    """SIGINT (the server says BYE and finishes its capture file), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the render server", description="Run the NRB/1 render server: engines "
                       "connect (ZeroMQ DEALER) and get rendered frames back.")
    add_server_arguments(p)
    p.set_defaults(func=_run_serve)
    r = sub.add_parser("record", help="serve and record every session to a capture file",
                       description="Same as `nrb serve --record CAPTURE`: a server that records each session's "
                                   "frames, events, hooks and results for `nrb replay` / `nrb inspect`.")
    r.add_argument("capture", help="capture file to write (.nrbcap)")
    add_server_arguments(r, record=False)
    r.set_defaults(func=_run_record)
