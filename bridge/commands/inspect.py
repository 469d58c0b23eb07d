"""``nrb inspect CAPTURE [--frame N] --out x.png``: one captured frame as a contact sheet.

Every channel of every G-buffer becomes a labelled tile (unorm/float channels as grey levels stretched to their
range, id buffers in false colour), followed by the style map — one tile per style with non-zero weight plus a
false-colour "dominant style" tile — and the image the server sent back. The style map is rebuilt by re-running the
session's style pipeline up to that frame, exactly as ``nrb replay`` does. A text summary (buffers, events, style
commands, timing, style mix) goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bridge.capture import CaptureError, CaptureReader
from bridge.commands.replay import ReplayedFrame, SessionReplay
from bridge.hooks import HookLoadError
from bridge.protocol import FORMATS, RECORDED_CODECS, Buffer, Result, decode
from bridge.renderer import display_rgba8

_CHANNELS = "rgba"
_STYLE_COLORS = np.asarray([[200, 200, 200], [90, 170, 90], [240, 120, 40], [60, 60, 60], [230, 190, 40],
                            [200, 40, 160], [40, 120, 220], [140, 80, 200]], np.uint8)
LABEL_H = 14


def _ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Distinct, stable false colours per id (0 = black)."""
    h = (ids.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(255) for s in (0, 8, 16)], -1).astype(np.uint8) | 64
    rgb[ids == 0] = 0
    return rgb


def _gray(ch: np.ndarray) -> np.ndarray:
    """Stretch one channel to 0..255 (robust range; constant channels show mid grey unless 0 or 1)."""
    if ch.dtype == np.uint8:
        return ch
    x = ch.astype(np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(ch.shape, np.uint8)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi - lo < 1e-12:
        v = 255 if lo >= 1 else (0 if lo <= 0 else 128)
        return np.full(ch.shape, v, np.uint8)
    return (np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def buffer_tiles(b: Buffer) -> list[tuple[str, np.ndarray]]:
    """One (label, RGB tile) per channel of a buffer; id buffers as a single false-colour tile."""
    a = b.array()
    info = FORMATS[b.format]
    if b.name in ("material_id", "object_id") or info.dtype.kind == "u" and info.dtype.itemsize > 1:
        return [(f"{b.name} ({b.format})", _ids_to_rgb(a[..., 0]))]
    tiles = []
    for c in range(info.channels):
        g = _gray(a[..., c])
        tiles.append((f"{b.name}.{_CHANNELS[c]} ({b.format})", np.repeat(g[..., None], 3, -1)))
    return tiles


def style_tiles(style_map: np.ndarray, names: list[str]) -> list[tuple[str, np.ndarray]]:
    """Weight tiles for the styles present, and a dominant-style false-colour tile scaled by its weight."""
    tiles = []
    for s, name in enumerate(names):
        w = style_map[..., s]
        if w.max() > 0:
            g = (np.clip(w, 0, 1) * 255 + 0.5).astype(np.uint8)
            tiles.append((f"style {name} [{w.min():.2f}..{w.max():.2f}]", np.repeat(g[..., None], 3, -1)))
    top = style_map.argmax(-1)
    weight = style_map.max(-1)[..., None]
    dom = (_STYLE_COLORS[top % len(_STYLE_COLORS)] * weight).astype(np.uint8)
    legend = ", ".join(f"{n}" for n in names[: len(_STYLE_COLORS)])
    tiles.append((f"dominant style ({legend})", dom))
    return tiles


def contact_sheet(tiles: list[tuple[str, np.ndarray]], columns: int = 4, max_width: int = 320) -> Image.Image:
    """Lay tiles out in a grid with a label above each."""
    h0, w0 = tiles[0][1].shape[:2]
    scale = min(1.0, max_width / w0)
    tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tw, rows * (th + LABEL_H)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(tiles):
        x, y = (i % columns) * tw, (i // columns) * (th + LABEL_H)
        tile = Image.fromarray(np.ascontiguousarray(img[..., :3])).resize((tw, th), Image.Resampling.NEAREST)
        sheet.paste(tile, (x, y + LABEL_H))
        draw.text((x + 2, y + 1), label[: max(8, tw // 6)], fill=(235, 235, 235))
    return sheet


def inspect_capture(capture: str | Path, out: str | Path, *, frame: int | None = None, session: int | None = None,
                    hooks: str | Path | None = None, columns: int = 4) -> tuple[Path, ReplayedFrame]:
    """Write the contact sheet of one frame (default: the last one with pixels); return its path and the frame."""
    with CaptureReader(capture) as reader:
        replay = SessionReplay(reader, session, hooks=hooks)
        chosen: ReplayedFrame | None = None
        for rf in replay:
            if rf.style_map is None:
                continue
            chosen = rf
            if frame is not None and rf.frame.frame >= frame:
                break
        if chosen is None or (frame is not None and chosen.frame.frame != frame):
            have = [r.frame for r in reader.frame_refs(replay.session)]
            raise CaptureError(f"frame {frame} is not in session {replay.session} (frames {have[:5]}…{have[-5:]})")
        tiles: list[tuple[str, np.ndarray]] = []
        for b in chosen.frame.buffers:
            tiles += buffer_tiles(b)
        assert chosen.style_map is not None
        tiles += style_tiles(chosen.style_map, replay.library.names)
        r = chosen.captured.result
        if r is not None and r.status == "ok":
            msg = decode(r.wire, compression=RECORDED_CODECS)
            if isinstance(msg, Result) and msg.output is not None:
                tiles.append((f"output ({msg.output.format})", display_rgba8(msg.output.array())))
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet = contact_sheet(tiles, columns)
        sheet.save(out)
        return out, chosen


def _summary(rf: ReplayedFrame) -> str:
    f = rf.frame
    lines = [f"session {rf.captured.session} frame {f.frame}: t={rf.time:.3f} s dt={f.dt:.4f} "
             f"deadline={f.deadline_ms:g} ms"]
    for b in f.buffers:
        lines.append(f"  buffer {b.name:<14} {b.format:<11} {b.width}x{b.height} stride {b.stride}")
    for e in f.events:
        lines.append(f"  event  {e.name} {e.params} -> {e.target.scope} {list(e.target.ids)}")
    for s in f.styles:
        lines.append(f"  style  {s.style} strength {s.strength:g} over {s.over:g} s -> {s.target.scope} "
                     f"{list(s.target.ids)}")
    r = rf.captured.result
    if r is not None:
        timing = " ".join(f"{k}={v:.2f}" for k, v in r.timing.items())
        lines.append(f"  result {r.status} {timing}")
        match = rf.digest_matches
        if match is not None:
            lines.append(f"  style map {'matches' if match else 'DIFFERS FROM'} the recorded digest")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        path, rf = inspect_capture(args.capture, args.out, frame=args.frame, session=args.session, hooks=args.hooks,
                                   columns=args.columns)
    except (CaptureError, HookLoadError, OSError, ValueError) as exc:
        print(f"nrb inspect: {exc}", file=sys.stderr)
        return 2
    print(_summary(rf))
    print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show a captured frame's G-buffer channels and style map side by side",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture")
    p.add_argument("--frame", type=int, help="frame id (default: the last rendered frame)")
    p.add_argument("--session", type=int, help="session id (default: the first)")
    p.add_argument("--out", default="out/inspect.png", help="PNG to write (default out/inspect.png)")
    p.add_argument("--hooks", help="use this hooks file instead of the recorded hooks source")
    p.add_argument("--columns", type=int, default=4)
    p.set_defaults(func=_run)
