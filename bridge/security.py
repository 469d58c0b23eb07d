"""CurveZMQ keys, the server's client allow-list, and the bind policy.

A renderer on another machine is a normal deployment, so listening anywhere but loopback must be a decision: it
needs either CurveZMQ (encryption plus an allow-list of client public keys, checked by a ZAP handler before the
server sees a single message) or an explicit ``--insecure``. Key files use ZeroMQ's ZPL certificate format
(``zmq.auth``), the same files libnrb, the Godot and Unreal settings and the Panda3D plugin read.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

ZAP_DOMAIN = "nrb"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class SecurityError(RuntimeError):
    """A configuration that would expose the renderer without the user asking for it."""


@dataclass(frozen=True)
class KeyPair:
    """A Curve25519 key pair in Z85 text (40 characters each); ``secret`` is None for a public-only cert."""

    public: bytes
    secret: bytes | None


def generate_keys(directory: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, share it) and ``NAME.key_secret`` (keep it, mode 0600) into ``directory``.

    Existing files are never overwritten unless ``force``: replacing a server key silently would lock every engine
    out, replacing a client key would revoke it.
    """
    if not zmq.has("curve"):
        raise SecurityError("this libzmq was built without CURVE support")
    if not name or "/" in name or name.startswith("."):
        raise SecurityError(f"key name {name!r} must be a plain file name")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise SecurityError(f"{public} or {secret} already exists (pass --force to replace the key pair)")
    old = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    secret.chmod(0o600)
    public.chmod(0o644)
    return public, secret


def load_keypair(path: Path) -> KeyPair:
    """Load a ZPL certificate; a ``.key_secret`` file gives both keys, a ``.key`` file only the public one."""
    if not path.is_file():
        raise SecurityError(f"key file {path} does not exist")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise SecurityError(f"{path} is not a ZeroMQ certificate: {exc}") from exc
    return KeyPair(public, secret)


def client_curve_options(server_public: Path, client_secret: Path) -> dict[str, str]:
    """The CURVE keyword arguments (Z85 text) of both engine clients, ``bridge.client.Client`` and libnrb's
    ``bridge._native.Client``: ``curve_server_key``, ``curve_public_key``, ``curve_secret_key``."""
    server = load_keypair(server_public)
    client = load_keypair(client_secret)
    if client.secret is None:
        raise SecurityError(f"{client_secret} holds no secret key (use the .key_secret file)")
    return {"curve_server_key": server.public.decode("ascii"), "curve_public_key": client.public.decode("ascii"),
            "curve_secret_key": client.secret.decode("ascii")}


def is_loopback(host: str) -> bool:
    """True for loopback names and addresses, which are safe to bind without CURVE."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_policy(host: str, *, curve: bool, insecure: bool) -> None:
    """Refuse to listen beyond loopback unless CURVE is on or the user said ``--insecure`` (then warn)."""
    if is_loopback(host) or curve:
        return
    if not insecure:
        raise SecurityError(
            f"refusing to listen on {host} without CurveZMQ: pass --curve-secret/--allow-dir, "
            "or --insecure to accept unauthenticated, unencrypted traffic"
        )
    warnings.warn(
        f"listening on {host} WITHOUT encryption or authentication (--insecure): anyone who can reach this "
        "port can send frames and read rendered images",
        stacklevel=2,
    )


class ServerCurve:
    """CURVE server role plus a ZAP allow-list: unknown client keys are refused before any NRB message.

    libzmq asks the ZAP handler once per connection, during the CURVE handshake; ``is_allowed`` lets the server
    re-check every message's authenticated key (its ``User-Id``) against the current list as well, so that a key
    removed from the allow-list and ``reload()``-ed is cut off at once, established connections included.

    Keep the object alive for as long as the socket: it owns the authenticator thread.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], secret_file: Path, allow_dir: Path) -> None:
        keys = load_keypair(secret_file)
        if keys.secret is None:
            raise SecurityError(f"{secret_file} holds no secret key (use the .key_secret file)")
        if not allow_dir.is_dir() or not any(allow_dir.glob("*.key")):
            raise SecurityError(f"allow-list {allow_dir} has no client .key files")
        self.keys = keys
        self.allow_dir = allow_dir
        self.allowed: frozenset[str] = frozenset()
        self._auth = ThreadAuthenticator(context, log=log)
        self._auth.start()
        self.reload()

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE server with our keys (call before bind)."""
        sock.curve_server = True
        sock.curve_publickey = self.keys.public
        sock.curve_secretkey = self.keys.secret
        sock.zap_domain = ZAP_DOMAIN.encode()

    def reload(self) -> int:
        """Re-read the allow-list directory (after adding or revoking a client key); return how many keys it has.

        A directory that cannot be read keeps the previous list (and the error is logged)."""
        try:
            certs = zmq.auth.load_certificates(str(self.allow_dir))
        except (OSError, ValueError) as exc:
            log.error("cannot re-read the allow-list %s, keeping the previous one: %s", self.allow_dir, exc)
            return len(self.allowed)
        self.allowed = frozenset(k.decode("ascii") for k in certs)
        self._auth.certs[ZAP_DOMAIN] = certs  # what configure_curve does, without reading the directory twice
        return len(self.allowed)

    def is_allowed(self, user_id: str | None) -> bool:
        """Whether a message authenticated as ``user_id`` (the Z85 client key libzmq attaches) is still allowed."""
        return user_id is not None and user_id in self.allowed

    def close(self) -> None:
        self._auth.stop()


def apply_client_curve(sock: zmq.Socket[bytes], server_public: Path, client_secret: Path) -> None:
    """Make ``sock`` a CURVE client that trusts ``server_public`` and proves itself with ``client_secret``."""
    server = load_keypair(server_public)
    client = load_keypair(client_secret)
    if client.secret is None:
        raise SecurityError(f"{client_secret} holds no secret key (use the .key_secret file)")
    sock.curve_serverkey = server.public
    sock.curve_publickey = client.public
    sock.curve_secretkey = client.secret
