"""``nrb keys``: CurveZMQ key pairs for the server and for each engine install.

    nrb keys generate --dir keys/server --name server     # server.key (public) + server.key_secret (0600)
    nrb keys generate --dir keys/clients --name alice      # one pair per engine install
    nrb keys show keys/clients/alice.key_secret --secret    # the Z85 text for libnrb / Godot / Unreal settings

The files are ZeroMQ certificates (ZPL text, as ``zmq.auth`` and czmq write them). The server reads its
``.key_secret`` (``nrb serve --curve-secret``) and the allow-list directory of client ``.key`` files
(``--allow-dir``); an engine needs the server's public key and its own pair. See docs/security.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bridge.security import SecurityError, generate_keys, load_keypair


def _generate(args: argparse.Namespace) -> int:
    try:
        public, secret = generate_keys(Path(args.dir), args.name, force=args.force)
    except (SecurityError, OSError) as exc:
        print(f"nrb keys: {exc}", file=sys.stderr)
        return 2
    keys = load_keypair(secret)
    print(f"public key  {public}  (share it: the server's goes to every engine, a client's into the server's "
          "--allow-dir)")
    print(f"secret key  {secret}  (keep it: mode 0600, never copy it to another machine than its owner)")
    print(f"public Z85  {keys.public.decode('ascii')}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        keys = load_keypair(Path(args.file))
    except SecurityError as exc:
        print(f"nrb keys: {exc}", file=sys.stderr)
        return 2
    print(f"public  {keys.public.decode('ascii')}")
    if args.secret:
        if keys.secret is None:
            print(f"nrb keys: {args.file} holds no secret key (use the .key_secret file)", file=sys.stderr)
            return 2
        print(f"secret  {keys.secret.decode('ascii')}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="CurveZMQ key pairs (generate, show)", description=__doc__.splitlines()[0])
    keys_sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    g = keys_sub.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (secret) into DIR",
                            description="Generate a Curve25519 key pair as ZeroMQ certificate files.")
    g.add_argument("--dir", required=True, help="directory to write into (created if needed)")
    g.add_argument("--name", required=True, help="base file name, e.g. server or the engine install's name")
    g.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    g.set_defaults(func=_generate)
    s = keys_sub.add_parser("show", help="print a certificate's keys as Z85 text (for engine settings)",
                            description="Print the public key (and with --secret the secret key) of a certificate.")
    s.add_argument("file", help="a .key or .key_secret file")
    s.add_argument("--secret", action="store_true", help="also print the secret key (needs the .key_secret file)")
    s.set_defaults(func=_show)
