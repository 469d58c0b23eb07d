"""``python -m nrb_panda3d.selfcheck OUT.npz [--size WxH] [--frames N]``: render the sample scene's G-buffers
headless (no server needed) and save them with the camera constants, for tests and for checking a machine.
With ``--packed`` the GPU pack pass (:mod:`nrb_panda3d.pack`) runs on the same frames and its buffers are saved too
(``pk_NAME``), next to the numpy conversion's (``buf_NAME``) and the raster image it packs as ``hudless_color``.

Runs in its own process because Panda3D allows one ``ShowBase`` per process. Prints the GL renderer string.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nrb_panda3d.selfcheck")
    p.add_argument("out")
    p.add_argument("--size", default="160x120")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--packed", action="store_true", help="also run the GPU pack pass and save its buffers")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))

    from nrb_panda3d.headless import configure

    configure(w, h)
    from direct.showbase.ShowBase import ShowBase

    from nrb_panda3d.game import SampleGame
    from nrb_panda3d.gbuffer import GBufferPass, texture_to_array

    base = ShowBase(windowType="offscreen")
    gsg = base.win.getGsg()
    print(f"GL: {gsg.getDriverVendor()} | {gsg.getDriverRenderer()} | {gsg.getDriverVersion()}", flush=True)
    game = SampleGame(base)
    gb = GBufferPass(base, base.render, base.cam, (w, h))
    pack = None
    packed: dict[str, np.ndarray] = {}
    if args.packed:
        from direct.filter.FilterManager import FilterManager
        from panda3d.core import Texture

        from nrb_panda3d.pack import PackPass

        color = Texture("raster")
        FilterManager(base.win, base.cam).renderSceneInto(colortex=color)
        pack = PackPass(base, gb, color)
    frame = None
    t0 = time.perf_counter()
    for _ in range(args.frames):
        game.step()
        camera = gb.update_objects()
        if pack is not None:
            pack.set_camera(camera)
        base.graphicsEngine.renderFrame()
        frame = gb.read()
    elapsed = time.perf_counter() - t0
    assert frame is not None
    raster = texture_to_array(base.win.getScreenshot())
    if pack is not None:
        packed = {f"pk_{k}": np.array(v[1]) for k, v in pack.read().buffers.items()}
        base.graphicsEngine.extractTextureData(color, base.win.getGsg())
        packed["raster_color"] = np.ascontiguousarray(texture_to_array(color))
        color.clearRamImage()
    cam = frame.camera
    arrays = {f"buf_{k}": v[1] for k, v in frame.buffers.items()}
    fmts = {f"fmt_{k}": np.array(v[0]) for k, v in frame.buffers.items()}
    np.savez(args.out, raster=raster, clip_to_prev_clip=cam.clip_to_prev_clip, view_to_clip=cam.view_to_clip,
             world_to_view=cam.world_to_view, position=cam.position, forward=cam.forward, up=cam.up,
             right=cam.right, near=cam.near, far=cam.far, fov_y=cam.fov_y, aspect=cam.aspect,
             ms_per_frame=elapsed / args.frames * 1e3, **arrays, **fmts, **packed)
    print(f"{args.frames} frames, {elapsed / args.frames * 1e3:.1f} ms/frame; wrote {args.out}")
    base.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
