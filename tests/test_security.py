"""docs/security.md, claim by claim: bind policy, CurveZMQ keys and allow-list (Python and libnrb clients), key
revocation, limits enforced before allocating, shared-memory pool checks, and a hostile renderer.

Everything runs on loopback with real ``nrb serve`` processes and real sockets; no traffic ever goes to another
address (the non-loopback bind policy is checked as a function, and through the CLI on a port it cannot bind).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from helpers.serverkit import ALBEDO_SPEC, SIZE, RunningServer, albedo_only, served

from bridge.client import Client, RemoteError
from bridge.protocol import (
    Buffer,
    Bye,
    Error,
    Frame,
    Hello,
    OutputSpec,
    Result,
    ShmPool,
    Timing,
    Welcome,
    decode,
    encode,
)
from bridge.security import SecurityError, check_bind_policy, client_curve_options, is_loopback, load_keypair
from bridge.server import is_loopback_address

NRB = [sys.executable, "-m", "bridge.cli"]
QUIET_S = 1.5  # how long "gets nothing" is watched


def nrb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NRB, *args], capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------------------------------------ keys
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys made with ``nrb keys generate``: server, alice and bob (allowed), mallory (not allowed)."""
    root = tmp_path_factory.mktemp("keys")
    for who in ("server", "alice", "bob", "mallory"):
        out = nrb("keys", "generate", "--dir", str(root / who), "--name", who)
        assert out.returncode == 0, out.stderr
    allow = root / "allowed"
    allow.mkdir()
    for who in ("alice", "bob"):
        shutil.copy(root / who / f"{who}.key", allow)
    paths = {who: root / who / f"{who}.key_secret" for who in ("server", "alice", "bob", "mallory")}
    return {**paths, "server_public": root / "server" / "server.key", "allow": allow, "root": root}


def test_nrb_keys_generate_writes_a_certificate_pair_and_never_overwrites_it(keys: dict[str, Path]) -> None:
    public, secret = keys["root"] / "alice" / "alice.key", keys["alice"]
    assert public.stat().st_mode & 0o777 == 0o644 and secret.stat().st_mode & 0o777 == 0o600
    pair = load_keypair(secret)
    pub, sec = pair.public, pair.secret
    assert load_keypair(public).public == pub and load_keypair(public).secret is None
    assert len(pub) == 40 and sec is not None and len(sec) == 40
    before = secret.read_bytes()
    again = nrb("keys", "generate", "--dir", str(secret.parent), "--name", "alice")
    assert again.returncode == 2 and "already exists" in again.stderr and secret.read_bytes() == before
    shown = nrb("keys", "show", str(secret), "--secret")
    assert shown.returncode == 0 and pub.decode() in shown.stdout and sec.decode() in shown.stdout
    assert "secret" not in nrb("keys", "show", str(public)).stdout


@pytest.fixture(scope="module")
def curve_server(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[RunningServer]:
    with served(tmp_path_factory.mktemp("curve"), "--renderer", "passthrough", "--curve-secret", str(keys["server"]),
                "--allow-dir", str(keys["allow"])) as srv:
        yield srv


def py_client(endpoint: str, keys: dict[str, Path], who: str | None, timeout: float = 5.0) -> Client:
    curve = client_curve_options(keys["server_public"], keys[who]) if who else {}
    return Client(endpoint, timeout=timeout, **curve)


def native_client(endpoint: str, keys: dict[str, Path], who: str | None) -> Any:
    native = pytest.importorskip("bridge._native")
    if not hasattr(native, "Client"):
        pytest.skip("bridge._native was built without the client")
    curve = client_curve_options(keys["server_public"], keys[who]) if who else {}
    return native.Client(endpoint=endpoint, render_size=SIZE, transport="inline", deadline_ms=200,
                         buffers=[("albedo", "rgba8_srgb")], handshake_timeout_ms=300, connect_timeout_ms=300,
                         reconnect_backoff_min_ms=20, reconnect_backoff_max_ms=100, engine="security", **curve)


def gets_nothing(c: Client, seconds: float = QUIET_S) -> bool:
    """True when not a single message (no WELCOME, no ERROR, nothing) arrives within ``seconds``."""
    return c.sock.poll(int(seconds * 1000)) == 0


def run_native(c: Any, seconds: float) -> list[int]:
    """Drive a libnrb client for ``seconds``; return the frame ids of the rendered images it showed."""
    img = np.full((SIZE[1], SIZE[0], 4), 77, np.uint8)
    shown: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c.begin()
        c.tag_buffer("albedo", "rgba8_srgb", img)
        c.submit()
        got = c.acquire_result(with_info=True)
        if got is not None:
            assert np.array_equal(got[0], img)
            shown.append(got[1]["frame_id"])
        time.sleep(0.005)
    return shown


def test_allowed_python_client_gets_welcome_and_frames(curve_server: RunningServer, keys: dict[str, Path]) -> None:
    with py_client(curve_server.endpoint, keys, "alice") as c:
        c.hello(SIZE, ALBEDO_SPEC)
        assert c.render(albedo_only(value=9)).status == "ok"
        c.bye()


def test_allowed_libnrb_client_gets_frames(curve_server: RunningServer, keys: dict[str, Path]) -> None:
    with native_client(curve_server.endpoint, keys, "bob") as c:
        shown = run_native(c, 1.5)
        assert len(shown) >= 5 and c.stats()["errors_received"] == 0


def test_panda3d_plugin_client_takes_its_curve_keys_from_its_config(curve_server: RunningServer,
                                                                   keys: dict[str, Path]) -> None:
    """The Panda3D plugin's client, libnrb (``nrb-curve-*`` config variables → ``ClientConfig.curve_*``)."""
    native_client(curve_server.endpoint, keys, None).close()  # skips when libnrb is not built
    from nrb_panda3d.client import ClientConfig, make_client

    cfg = ClientConfig(endpoint=curve_server.endpoint, render_size=SIZE, buffers=[("albedo", "rgba8_srgb")],
                       deadline_ms=500.0, **client_curve_options(keys["server_public"], keys["alice"]))
    client = make_client(cfg)
    try:
        img = np.full((SIZE[1], SIZE[0], 4), 31, np.uint8)
        got = None
        end = time.monotonic() + 10
        while got is None and time.monotonic() < end:
            client.frame_begin()
            client.tag_buffer("albedo", "rgba8_srgb", img)
            client.submit()
            time.sleep(0.01)
            got = client.acquire_result()
        assert got is not None and np.array_equal(got.pixels, img), client.last_error()
    finally:
        client.close()


@pytest.mark.parametrize("who", ["mallory", None], ids=["unknown-key", "no-curve"])
def test_client_without_an_allowed_key_gets_nothing_at_all(curve_server: RunningServer, keys: dict[str, Path],
                                                           who: str | None) -> None:
    """Refused inside libzmq's handshake: not a WELCOME, not an ERROR, not a byte of NRB; the server never even
    sees the HELLO (no session is opened)."""
    opened = curve_server.log_text().count(" opened: ")
    with py_client(curve_server.endpoint, keys, who, timeout=QUIET_S) as c:
        with pytest.raises(TimeoutError):
            c.hello(SIZE, ALBEDO_SPEC)  # the HELLO cannot even be sent: there is no connection to send it on
        assert gets_nothing(c, 0.2)
    with native_client(curve_server.endpoint, keys, who) as n:
        assert run_native(n, QUIET_S) == []
        s = n.stats()
        assert s["state"] == "connecting" and s["session"] == 0 and s["errors_received"] == 0
        assert s["bytes_received"] == 0 and s["frames_sent"] == 0
    assert curve_server.log_text().count(" opened: ") == opened


def test_a_curve_client_talks_only_to_the_server_whose_key_it_has(tmp_path: Path, keys: dict[str, Path],
                                                                   curve_server: RunningServer) -> None:
    """An engine configured for CURVE never falls back to plaintext, and never accepts an impostor: a server without
    CURVE, or a CURVE server with another key (here: one that believes mallory's key is the server's), gets no
    connection and the engine falls back to its own image."""
    impostor = dict(keys, server_public=keys["root"] / "mallory" / "mallory.key")
    with served(tmp_path, "--renderer", "passthrough") as plain:
        for endpoint, k in ((plain.endpoint, keys), (curve_server.endpoint, impostor)):
            with native_client(endpoint, k, "alice") as n:
                assert run_native(n, 1.0) == []
                s = n.stats()
                assert s["session"] == 0 and s["bytes_received"] == 0 and s["fallbacks"] > 0
        assert " opened: " not in plain.log_text()


def test_revoked_key_is_cut_off_on_sighup_established_connection_included(tmp_path: Path,
                                                                          keys: dict[str, Path]) -> None:
    allow = tmp_path / "allowed"
    shutil.copytree(keys["allow"], allow)
    with served(tmp_path, "--renderer", "passthrough", "--curve-secret", str(keys["server"]),
                "--allow-dir", str(allow)) as srv, py_client(srv.endpoint, keys, "alice", timeout=QUIET_S) as alice:
        alice.hello(SIZE, ALBEDO_SPEC)
        assert alice.render(albedo_only()).status == "ok"
        (allow / "alice.key").unlink()
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reloaded" not in srv.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "1 client key(s); closed 1 session(s) of revoked keys" in srv.log_text()
        alice.send_frame(albedo_only())
        assert gets_nothing(alice)  # the connection is still up, but alice's key no longer gets answers
        with py_client(srv.endpoint, keys, "alice", timeout=QUIET_S) as again, pytest.raises(TimeoutError):
            again.hello(SIZE, ALBEDO_SPEC)
        with py_client(srv.endpoint, keys, "bob") as bob:
            bob.hello(SIZE, ALBEDO_SPEC)
            assert bob.render(albedo_only()).status == "ok"


# ------------------------------------------------------------------------------------------------ bind policy
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_needs_nothing(host: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_bind_policy(host, curve=False, insecure=False)
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "10.1.2.3", "renderer.example.com"])
def test_beyond_loopback_needs_curve_or_an_explicit_insecure_that_warns(host: str) -> None:
    with pytest.raises(SecurityError, match="--insecure"):
        check_bind_policy(host, curve=False, insecure=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_bind_policy(host, curve=True, insecure=False)  # CURVE: no warning
    with pytest.warns(UserWarning, match="WITHOUT encryption"):
        check_bind_policy(host, curve=False, insecure=True)


def test_nrb_serve_refuses_then_warns_at_start(tmp_path: Path) -> None:
    """Through the CLI. ``--insecure`` is tried on a port a loopback listener holds, so the server prints its warning
    and then cannot bind: nothing ever listens beyond loopback."""
    refused = nrb("serve", "--renderer", "passthrough", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without CurveZMQ" in refused.stderr
    refused = nrb("serve", "--renderer", "passthrough", "--endpoint", "tcp://0.0.0.0:0")
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without CurveZMQ" in refused.stderr
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        warned = nrb("serve", "--renderer", "passthrough", "--host", "0.0.0.0", "--insecure", "--port", str(port))
    assert warned.returncode == 2 and "listening on" not in warned.stdout
    assert "nrb serve: WARNING: listening on 0.0.0.0 WITHOUT encryption or authentication" in warned.stderr
    with served(tmp_path, "--renderer", "passthrough", "--host", "127.0.0.2") as srv:  # a loopback alias
        assert srv.endpoint.startswith("tcp://127.0.0.2:") and "WARNING" not in srv.log_text()


# ------------------------------------------------------------------------------------------------ limits
def test_oversize_message_is_dropped_by_libzmq_and_others_are_served(tmp_path: Path) -> None:
    """``ZMQ_MAXMSGSIZE``: libzmq disconnects a peer whose message part is larger, before allocating it. The
    peer gets no answer and its session is gone (after its socket reconnects: NO_SESSION); others are unaffected."""
    with served(tmp_path, "--renderer", "passthrough", "--max-message-size", "100000") as srv, \
            srv.client() as good, srv.client(timeout=QUIET_S) as bad:
        good.hello(SIZE, ALBEDO_SPEC)
        sid = bad.hello(SIZE, ALBEDO_SPEC).session
        header = bytes(encode(Frame(sid, 1, 0, 0.0, 100.0, albedo_only((200, 200))))[0])
        bad.send_raw([header, bytes(200 * 200 * 4)])  # 160000 B payload > 100000
        assert gets_nothing(bad)
        assert good.render(albedo_only()).status == "ok"
        bad.send_raw([bytes(f) for f in encode(Frame(sid, 2, 0, 0.0, 100.0, albedo_only()))])
        answer = bad.recv()  # on the connection libzmq re-made: the session was the old connection's
        assert isinstance(answer, Error) and answer.name == "NO_SESSION"
        assert good.render(albedo_only()).status == "ok" and srv.proc.poll() is None


def _frame_header(session: int, **changes: Any) -> dict[str, Any]:
    header = msgpack.unpackb(bytes(encode(Frame(session, 1, 0, 0.0, 100.0, albedo_only()))[0]))
    header.update(changes)
    return header


def test_limits_are_enforced_per_message_with_typed_errors(tmp_path: Path) -> None:
    """Header size, dimensions, buffer count, the server's --max-pixels and --max-sessions, frames in flight."""
    with served(tmp_path, "--renderer", "passthrough", "--max-pixels", str(200 * 200), "--max-sessions", "3",
                "--max-in-flight", "1") as srv, srv.client() as c, srv.client() as other:
        c.hello(SIZE, ALBEDO_SPEC)
        other.hello(SIZE, ALBEDO_SPEC)
        sid = c.session
        assert sid is not None
        desc = _frame_header(sid)["buffers"][0]
        cases: list[tuple[list[bytes], str]] = [
            ([b"\x80" + bytes(65536)], "LIMIT_EXCEEDED"),  # header > 64 KiB
            ([msgpack.packb(_frame_header(sid, buffers=[{**desc, "width": 16385}]))], "LIMIT_EXCEEDED"),
            ([msgpack.packb(_frame_header(sid, buffers=[{**desc, "name": f"x_b{i}"} for i in range(33)]))],
             "LIMIT_EXCEEDED"),
            ([bytes(encode(Hello("e", "1", "c", [], (300, 300), (300, 300), list(ALBEDO_SPEC)))[0])],
             "LIMIT_EXCEEDED"),  # --max-pixels
            ([bytes(encode(Hello("e", "1", "c", [], SIZE, SIZE, list(ALBEDO_SPEC)))[0])], "WELCOME"),  # 3rd session
            ([bytes(encode(Hello("e", "1", "c", [], SIZE, SIZE, list(ALBEDO_SPEC)))[0])], "OVERLOADED"),  # 4th
        ]
        for frames, code in cases:
            c.send_raw(frames)
            answer = c.recv()
            if code == "WELCOME":
                assert isinstance(answer, Welcome)
                continue
            assert isinstance(answer, Error) and answer.name == code, (code, answer)
        # frames in flight: the server announced 1; a burst gets OVERLOADED for what exceeds it
        ids = [c.send_frame(albedo_only()) for _ in range(6)]
        names = []
        for fid in ids:
            try:
                names.append(c.result(fid).status)
            except RemoteError as exc:
                names.append(exc.name)
        assert "OVERLOADED" in names and "ok" in names
        assert other.render(albedo_only()).status == "ok"


def test_a_peer_that_keeps_sending_rejected_messages_loses_its_session(tmp_path: Path) -> None:
    with served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as good, srv.client() as bad:
        good.hello(SIZE, ALBEDO_SPEC)
        sid = bad.hello(SIZE, ALBEDO_SPEC).session
        errors = 0
        for i in range(64):  # the server's max_rejects: 64 in a row
            bad.send_raw([b"\xc1" + bytes([i])])
            answer = bad.recv()
            assert isinstance(answer, Error) and answer.name == "MALFORMED"
            errors += 1
            if i % 16 == 0:
                assert good.render(albedo_only()).status == "ok"
        bye = bad.recv()
        assert isinstance(bye, Bye) and bye.session == sid and "rejected" in (bye.reason or "")
        bad.send_frame(albedo_only())
        answer = bad.recv()
        assert isinstance(answer, Error) and answer.name == "NO_SESSION"
        assert good.render(albedo_only()).status == "ok" and errors == 64


# ------------------------------------------------------------------------------------------------ shared memory
@pytest.fixture
def pool() -> Iterator[tuple[str, shared_memory.SharedMemory]]:
    name = f"nrb-sec-{os.getpid()}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=2 * 65536)
    try:
        yield "/" + name, shm
    finally:
        shm.close()
        shm.unlink()


def test_server_maps_only_nrb_pools_and_each_pool_for_one_session(tmp_path: Path,
                                                                  pool: tuple[str, Any]) -> None:
    """A POSIX shared-memory name is global: a HELLO naming someone else's object (another engine's pool, another
    program's memory) must not get it mapped, or the client could read it back as G-buffers or overwrite it."""
    name, _ = pool
    other = f"sec-not-nrb-{os.getpid()}-{secrets.token_hex(4)}"
    foreign = shared_memory.SharedMemory(name=other, create=True, size=2 * 65536)
    try:
        with served(tmp_path, "--renderer", "passthrough") as srv, srv.client() as a, srv.client() as b, \
                srv.client() as c:
            assert "shm" in a.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"], shm=ShmPool(name, 2, 65536)).capabilities
            assert "shm" not in b.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"],
                                        shm=ShmPool(name, 2, 65536)).capabilities  # already a's
            assert "shm" not in c.hello(SIZE, ALBEDO_SPEC, capabilities=["shm"],
                                        shm=ShmPool("/" + other, 2, 65536)).capabilities  # not an nrb pool
            assert b.render(albedo_only()).status == "ok" and c.render(albedo_only()).status == "ok"
            log = srv.log_text()
            assert "is already mapped for session" in log and "does not start with '/nrb-'" in log
    finally:
        foreign.close()
        foreign.unlink()


@pytest.mark.parametrize(("addr", "local"), [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True),
                                             ("::ffff:127.0.0.1", True), ("192.168.1.20", False),
                                             ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("", False),
                                             ("localhost:0:0:1", False)])
def test_only_loopback_peers_count_as_local_for_shared_memory(addr: str, local: bool) -> None:
    assert is_loopback_address(addr) is local


# ------------------------------------------------------------------------------------------------ hostile renderer
class LyingRenderer:
    """Announces a 96x64 rgba8_srgb output in WELCOME, then answers every FRAME with a 48x32 image."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.answered = 0
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop:
            if not self.sock.poll(20):
                continue
            rid, *frames = self.sock.recv_multipart()
            msg = decode(frames)
            if isinstance(msg, Hello):
                w, h = msg.render_size
                reply: Any = Welcome(7, "liar/1", [], [], [], OutputSpec("rgba8_srgb", w, h), 2, ["identity"])
            elif isinstance(msg, Frame):
                small = Buffer.from_array("output", "rgba8_srgb", np.zeros((32, 48, 4), np.uint8))
                reply = Result(7, msg.frame, "ok", Timing(), small)
                self.answered += 1
            else:
                continue
            self.sock.send_multipart([rid, *encode(reply)])

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.sock.close(0)
        self.ctx.term()


def test_libnrb_never_shows_a_result_that_does_not_match_welcome(keys: dict[str, Path]) -> None:
    """The engine sizes its textures from WELCOME: a RESULT of another size is dropped and counted, never shown."""
    liar = LyingRenderer()
    try:
        with native_client(liar.endpoint, keys, None) as c:
            assert run_native(c, 1.0) == []
            s = c.stats()
            assert liar.answered >= 5 and s["errors_received"] >= 5 and s["fallbacks"] > 0
            assert s["state"] == "connected" and s["results_received"] == 0
    finally:
        liar.close()


# ------------------------------------------------------------------------------------------------ decoders
DECODE_UNDER_LIMIT = r"""
import json, resource, struct, sys
from pathlib import Path
from bridge import _wire_testing
from bridge import protocol as p

def split(data):
    frames, i = [], 0
    while i + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, i)
        if i + 4 + n > len(data):
            break
        frames.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    if i < len(data):
        frames.append(data[i:])
    return frames

corpus = Path(sys.argv[1])
inputs = {f.stem: split(f.read_bytes()) for f in sorted(corpus.glob("hostile_*.bin"))}
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize:")).split()[1]) * 1024
limit = vm + (192 << 20)  # far less than any announced size (1 GiB, 4 GiB entries) or the 256 MiB zstd bomb
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {}
for name, frames in inputs.items():
    try:
        p.decode(frames, compression=p.COMPRESSIONS, shm_pool=p.ShmPool("/nrb-fuzz", 4, 1 << 20))
        py = "accepted"
    except p.ProtocolError as exc:
        py = exc.code.name
    except BaseException as exc:
        py = f"{type(exc).__name__}: {exc}"
    try:
        _wire_testing.wire_decode(frames, compression=list(p.COMPRESSIONS))
        cc = "accepted"
    except _wire_testing.WireError as exc:
        cc = exc.name
    except BaseException as exc:
        cc = f"{type(exc).__name__}: {exc}"
    out[name] = [py, cc]
print(json.dumps(out))
"""


def test_hostile_inputs_are_rejected_by_both_decoders_without_allocating_what_they_announce() -> None:
    """The corpus' hostile seeds (tests/fuzz_corpus/make_hostile_seeds.py: msgpack lengths of 2^32, compressed
    payloads announcing 1 GiB, decompression bombs, limits one past) decoded by the Python and the C++ decoder in
    a process whose address space is capped at 192 MiB above what it already uses: each gets its typed error."""
    corpus = Path(__file__).parent / "fuzz_corpus"
    expected = json.loads((corpus / "hostile_seeds.json").read_text())
    run = subprocess.run([sys.executable, "-c", DECODE_UNDER_LIMIT, str(corpus / "fuzz_decode")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert set(got) == set(expected)
    assert {k: v for k, v in got.items() if v != [expected[k]] * 2} == {}
