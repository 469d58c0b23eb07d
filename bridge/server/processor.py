"""The frame processor: what a render worker does with each frame it takes from the scheduler.

Per frame, in order: frames it superseded are applied first (their events and style commands, at their own frame
times); the pixels are read (shared memory copied out, compressed payloads inflated — only now, so superseded and
skipped frames are never read); the session's style pipeline advances (``set_style`` commands, then event hooks,
then every-frame hooks); a frame that can no longer make its deadline is answered ``skipped``; otherwise the style
map is built from the ``material_id`` / ``object_id`` buffers, the session's renderer renders, the exact grading
stage and the session's intensity and masks are applied, and the image is converted to the session's output
format and encoded once — into the RESULT that goes out and, unchanged, to the observers.

Robustness: a renderer exception or bad output becomes ERROR ``RENDER_FAILED`` for that frame (logged once per
distinct failure with context); a corrupt compressed payload is that frame's error; a shrunk shared-memory pool
closes the session; a bug of ours answers ``INTERNAL``. The worker always goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bridge import hello_options
from bridge.hooks import HookSet, HooksFile
from bridge.lights import check_lights
from bridge.protocol import (
    CHUNKED,
    COMPRESSIONS,
    FORMATS,
    SHUFFLE,
    STREAMED_OUTPUT,
    Buffer,
    ErrorCode,
    Frame,
    ProtocolError,
    Result,
    Timing,
    chunk_bytes_for,
    encode,
    encode_header,
    encode_streamed,
    inflate,
    stream_chunk_bytes_for,
)
from bridge.renderer import (
    BadOutput,
    RenderInputs,
    image_to_output,
    set_worker_threads,
    take_inference_ms,
    worker_context,
)
from bridge.session import QueuedFrame, Session
from bridge.shm import ShmShrunk, ShmUnavailable
from bridge.style.defined import StyleSource
from bridge.style.grading import grade, post_process
from bridge.style.stylemap import style_map_digest

from .config import ServerConfig, name_os_thread
from .observers import FrameDone, Observers
from .outbox import Outbox
from .scheduler import Scheduler
from .stats import ServerStats

log = logging.getLogger("nrb.server")


def _elapsed_ms(since_ns: int) -> float:
    return (time.perf_counter_ns() - since_ns) / 1e6


#: Threads that (de)compress chunked payloads (protocol section 6.3.2): the cores, 2 to 4; a RESULT image is split
#: into that many chunks, so each one gets a thread.
CHUNK_THREADS = max(2, min(4, os.cpu_count() or 1))


class FrameProcessor:
    """Decode → styles/hooks → render → grading/post → encode, for the frames the scheduler hands out."""

    def __init__(self, config: ServerConfig, scheduler: Scheduler, stats: ServerStats, outbox: Outbox,
                 observers: Observers, styles: StyleSource, hooks: HooksFile | None) -> None:
        self.config = config
        self.scheduler = scheduler
        self.stats = stats
        self.outbox = outbox
        self.observers = observers
        self.styles = styles
        self.hooks = hooks
        self._hooks_lock = threading.Lock()  # workers share the hooks file (hot reload)
        self._chunks: ThreadPoolExecutor | None = None
        self._chunks_lock = threading.Lock()

    def chunk_pool(self) -> ThreadPoolExecutor:
        """The threads that decompress a FRAME's chunks and compress a RESULT image's (protocol section 6.3.2):
        the cores, 2 to 4, named ``nrb-chunk`` (python-lz4 and zstandard release the GIL, so chunks of one frame
        run on several cores while the render worker that owns the frame waits for them). Shared by all workers;
        made with the first chunked payload."""
        with self._chunks_lock:
            if self._chunks is None:
                self._chunks = ThreadPoolExecutor(CHUNK_THREADS, "nrb-chunk",
                                                  initializer=name_os_thread, initargs=("nrb-chunk",))
            return self._chunks

    def close(self) -> None:
        """Let the chunk threads go (the server's shutdown; idle threads would also end with the process)."""
        with self._chunks_lock:
            if self._chunks is not None:
                self._chunks.shutdown(wait=False)
                self._chunks = None

    # ---------------------------------------------------------------------------------------------- the worker
    def run_worker(self, index: int, stop: threading.Event) -> None:
        """A render worker: take the queued frame with the earliest deadline (of a session no other worker is
        processing) and process it, until ``stop``. Each frame's renderer call runs under a thread budget set for
        that frame (``Scheduler.frame_threads``: all the cores when this is the only busy worker, a share when
        several are; ``bridge.renderer.worker_context`` / ``set_worker_threads``), so renderers that keep
        per-thread state (ONNX Runtime sessions) keep their own instance per worker and budget."""
        name_os_thread(f"nrb-render-{index}")
        with self.outbox.worker_socket(), worker_context(index, self.scheduler.worker_threads):
            while True:
                picked = self.scheduler.take(stop)
                if picked is None:
                    return
                sess, item, threads = picked
                set_worker_threads(threads)
                try:
                    self.process(sess, item)
                except Exception as exc:
                    log.exception("internal error processing session %d frame %d", sess.id, item.frame.frame)
                    self.outbox.error(item.routing_id, ProtocolError(ErrorCode.INTERNAL,
                                                                     f"{type(exc).__name__}: {exc}"),
                                      sess.id, item.frame.frame, sess.doorbell)
                finally:
                    if self.scheduler.finished(sess):
                        sess.close()  # closed while we rendered: release its shared memory now

    # ------------------------------------------------------------------------------------------- one frame
    def process(self, sess: Session, item: QueuedFrame) -> None:
        """Everything for one frame taken from the queue (see the module docstring)."""
        for older in item.carried:  # superseded frames first, in order (latest frame wins)
            self._apply_unrendered(sess, older)
        if item.answered or item.style_only:
            self._apply_unrendered(sess, item, current=True)
            return
        frame = item.frame
        dequeued = time.perf_counter_ns()
        queue_ms = (dequeued - item.received_ns) / 1e6
        if sess.pool is not None:  # copied out only now: superseded and skipped frames are never read
            try:
                sess.pool.resolve_all(frame.buffers)
            except ShmShrunk as exc:
                self._pool_shrunk(sess, item, exc)
                return
        try:
            chunked = any(b.chunks and (b.compressed is not None or b.pieces is not None) for b in frame.buffers)
            inflate_ms = inflate(frame.buffers, self.chunk_pool() if chunked else None)
            check_lights(frame.buffers)  # x_lights values (protocol 6.1) need the payload, so are checked here
        except ProtocolError as exc:  # corrupt payload, bad light values: this frame's answer; the session goes on
            self._payload_corrupt(sess, item, exc)
            return
        t = self._apply(sess, item)
        timing = Timing(queue_ms=queue_ms, decode_ms=item.decode_ms + inflate_ms)
        if self.scheduler.dequeued_late(sess, item, queue_ms):
            timing.style_ms = _elapsed_ms(dequeued)
            timing.total_ms = _elapsed_ms(item.received_ns)
            sess.answered_current = True
            self.stats.count("skipped", sess)
            skipped = self.outbox.send(item.routing_id, Result(sess.id, frame.frame, "skipped", timing),
                                       sess.doorbell)
            self.observers.frame_done(FrameDone(sess.id, frame.frame, "skipped", skipped, timing))
            return
        detail = self.observers.wants_detail  # the capture's style digest and inline pixels
        style_map = sess.pipeline.style_map(frame, sess.render_size)
        digest = style_map_digest(style_map) if detail else None
        timing.style_ms = _elapsed_ms(dequeued)
        t_render = time.perf_counter_ns()
        inputs = RenderInputs({b.name: b for b in frame.buffers}, size=sess.render_size, camera=frame.camera,
                              time=t, dt=frame.dt, frame=frame.frame, history=sess.history)
        take_inference_ms()  # from here on, what the renderer's model runs counts for this frame
        try:
            library = self.styles.library
            if sess.renderer.style_params:  # draws every style from its parameters: the whole map and the table
                inputs.style_table = library.shading_table()
                t_model = time.perf_counter_ns()
                image = sess.renderer.render(inputs, style_map)
            else:  # a defined style's weight goes to its base preset
                renderer_map = library.renderer_map(style_map)
                t_model = time.perf_counter_ns()
                image = sess.renderer.render(inputs, renderer_map)
            model_ms = _elapsed_ms(t_model)  # the renderer's own call: what the observers split render_ms by
            inference_ms = take_inference_ms()  # of it, the model runtime's own (None: a renderer without one)
            # exact grading of the pixels' styles (hue, white balance, lift/gamma/gain, fog, .cube LUTs), then the
            # session's intensity and masks against the engine's image; both skip frames they cannot change
            image = post_process(grade(image, style_map, self.styles.library, inputs), inputs, sess.pipeline.state)
            timing.render_ms = _elapsed_ms(t_render)
            t_encode = time.perf_counter_ns()
            output = self._output_buffer(sess, image, frame)
        except ShmShrunk as exc:
            self._pool_shrunk(sess, item, exc)
            return
        except Exception as exc:
            self._render_failed(sess, item, exc, timing, digest)
            return
        result = Result(sess.id, frame.frame, "ok", timing, output)
        streamed: list[Any] | None = None
        if STREAMED_OUTPUT in sess.compression and output.shm is None and output.compression in COMPRESSIONS \
                and output.chunk_bytes:
            # section 6.3.4: each chunk goes out in a PART as soon as it and those before it are compressed (on the
            # chunk threads), so the link and the engine's decompression overlap the compression; never through
            # the doorbell (a streaming session has none)
            streamed = []
            for part in encode_streamed(result, self.chunk_pool()):
                self.outbox.send_wire(item.routing_id, part)
                streamed.append(part[1])
            payloads: list[Any] = []
        else:
            # the payload is encoded (compressed when the session's link wants it: in chunks on the chunk threads
            # when negotiated) once; the header last, as it carries the timing and the chunk table
            payloads = encode(result, self.chunk_pool() if output.chunk_bytes else None)[1:]
        timing.encode_ms = _elapsed_ms(t_encode)
        timing.total_ms = _elapsed_ms(item.received_ns)
        wire: list[Any] = [encode_header(result), *payloads]
        self.scheduler.processed(sess, _elapsed_ms(dequeued))
        self.stats.rendered(sess, timing.total_ms)  # before answering: the engine may say BYE once it has it
        recorded = wire
        if detail and output.shm is not None and sess.pool is not None:
            # before answering: from then on the slot is the engine's again (section 7 rule 2)
            try:
                pixels = bytes(sess.pool.read(output.shm, output.size))
            except ShmUnavailable:  # shrunk since it was written: record the result without its pixels
                pixels = bytes(output.size)
            inline = dataclasses.replace(result, output=dataclasses.replace(output, shm=None, data=pixels))
            recorded = [encode_header(inline), pixels]
        sess.answered_current = True
        self.outbox.send_wire(item.routing_id, wire, sess.doorbell)
        if streamed is not None:  # the observers (a capture) see the RESULT with its image, as if not streamed
            whole = dataclasses.replace(result, output=dataclasses.replace(output, streamed=False))
            recorded = [encode_header(whole), b"".join(streamed)]
        self.observers.frame_done(FrameDone(sess.id, frame.frame, "ok", recorded, timing, digest,
                                            model_ms=model_ms, inference_ms=inference_ms))

    def answer_skipped(self, sess: Session, item: QueuedFrame) -> list[Any]:
        """Encode and count the ``skipped`` RESULT of a frame answered on arrival (superseded, or predicted late:
        ``item.skip_reason``); the I/O loop sends it. Its events still apply when a worker takes it."""
        waited = (time.perf_counter_ns() - item.received_ns) / 1e6
        timing = Timing(queue_ms=waited, decode_ms=item.decode_ms, total_ms=waited)
        self.stats.count("skipped", sess)
        self.stats.count("superseded" if item.skip_reason == "superseded" else "predicted_late", sess)
        return encode(Result(sess.id, item.frame.frame, "skipped", timing))

    def _hooks_for_frame(self) -> HookSet | None:
        if self.hooks is None:
            return None
        with self._hooks_lock:
            return self.hooks.current()

    def _apply(self, sess: Session, item: QueuedFrame) -> float:
        """Show ``item`` to the observers (the capture records it) and run its style pipeline (commands, hooks) at
        its frame time; return that time."""
        frame = item.frame
        hookset = self._hooks_for_frame()
        self.observers.frame_applied(sess, item, hookset)
        if frame.camera is not None and frame.camera.reset:
            sess.renderer.reset()
            sess.history.clear()
        t, hook_errors = sess.pipeline.advance(frame, hookset)
        if hook_errors:
            self.stats.hook_errors(sess, hook_errors)
        return t

    def _apply_unrendered(self, sess: Session, item: QueuedFrame, current: bool = False) -> None:
        """A frame that is not rendered: apply its events and style commands; answer OVERLOADED when it came over
        the in-flight limit (a frame already answered ``skipped`` only has its answer shown to the observers)."""
        self._apply(sess, item)
        frame = item.frame
        timing = Timing(queue_ms=(time.perf_counter_ns() - item.received_ns) / 1e6, decode_ms=item.decode_ms)
        if item.answered:
            assert item.skip_wire is not None
            self.observers.frame_done(FrameDone(sess.id, frame.frame, "skipped", item.skip_wire, timing))
            return
        self.stats.count(None, sess, "rejected")
        sess.answered_current = current  # from here on the engine may send its next frame
        err, wire = self.outbox.error(item.routing_id, ProtocolError(
            ErrorCode.OVERLOADED, f"more than {self.config.max_in_flight} frames in flight; events applied, "
                                  "frame not rendered"), sess.id, frame.frame, sess.doorbell)
        self.observers.frame_done(FrameDone(sess.id, frame.frame, "error", wire, timing, error=err.message))

    def _render_failed(self, sess: Session, item: QueuedFrame, exc: Exception, timing: Timing,
                       digest: bytes | None) -> None:
        frame = item.frame
        self.stats.count("render_failed", sess)
        what = "returned bad output" if isinstance(exc, BadOutput) else "raised"
        detail = f"{type(exc).__name__}: {exc}"
        key = detail.splitlines()[0][:200] if detail else type(exc).__name__
        if key not in sess.logged_failures and len(sess.logged_failures) < 64:
            sess.logged_failures.add(key)
            bufs = ", ".join(f"{b.name}:{b.format}:{b.width}x{b.height}" for b in frame.buffers)
            tb = "" if isinstance(exc, BadOutput) else "\n" + "".join(traceback.format_exception(exc)).rstrip()
            log.error("renderer %s %s on session %d frame %d (buffers %s; events %s): %s (further identical "
                      "failures of this session are counted, not logged)%s", sess.renderer.label, what, sess.id,
                      frame.frame, bufs, [e.name for e in frame.events], detail, tb)
        sess.answered_current = True
        err, wire = self.outbox.error(item.routing_id, ProtocolError(ErrorCode.RENDER_FAILED,
                                                                     f"renderer {what}: {detail}"),
                                      sess.id, frame.frame, sess.doorbell)
        self.observers.frame_done(FrameDone(sess.id, frame.frame, "error", wire, timing, digest, err.message))

    def _payload_corrupt(self, sess: Session, item: QueuedFrame, exc: ProtocolError) -> None:
        """A compressed payload that does not decompress to its announced size: the frame is answered with that
        error instead of a RESULT; its events and style commands still apply."""
        self.stats.count(None, sess, stat="rejected")
        item.frame = dataclasses.replace(item.frame, buffers=[])
        self._apply(sess, item)
        sess.answered_current = True
        err, wire = self.outbox.error(item.routing_id, exc, sess.id, item.frame.frame, sess.doorbell)
        self.observers.frame_done(FrameDone(sess.id, item.frame.frame, "error", wire, Timing(), error=err.message))

    def _pool_shrunk(self, sess: Session, item: QueuedFrame, exc: ShmShrunk) -> None:
        """The engine shrank its shared-memory pool (docs/protocol.md section 7 rule 5): answer the frame with
        ``BAD_VALUE`` and have the I/O thread close the session with a BYE (see ``bridge.shm`` for why this is an
        error and not a crash)."""
        log.warning("session %d: %s; closing the session", sess.id, exc)
        self.stats.count("shm_shrunk", sess, "render_failed")
        sess.answered_current = True
        self.outbox.error(item.routing_id, ProtocolError(ErrorCode.BAD_VALUE, f"{exc}: the pool must keep its size "
                                                                              "for the whole session"),
                          sess.id, item.frame.frame, sess.doorbell)
        self.scheduler.close_requests.append((sess.id, "shared memory pool shrank"))

    def _output_buffer(self, sess: Session, image: Any, frame: Frame) -> Buffer:
        """Validate the renderer's image and convert it to the session's output format (``BadOutput`` if bad)."""
        out = sess.welcome.output
        pixels = image_to_output(image, out.format, (out.width, out.height))
        buf = Buffer.from_array("output", out.format, pixels)
        if frame.result_slot is not None and sess.pool is not None:
            assert buf.data is not None
            return sess.pool.write_result(frame.result_slot, "output", out.format, buf.data, out.width, out.height)
        if hello_options.compress_output(buf, sess.hello, sess.welcome.capabilities):  # JPEG: section 6.3.1
            return buf
        if sess.compression and any(b.compression for b in frame.buffers):
            # The image goes back compressed when the frame it answers came compressed: the engine measures its
            # link and compresses only when that pays (libnrb), and the image follows its judgement. The fast codec
            # first; compressed on the render worker, never on the I/O thread (docs/protocol.md section 6.3).
            buf.compression = "lz4" if "lz4" in sess.compression else sess.compression[0]
            if STREAMED_OUTPUT in sess.compression:  # section 6.3.4 step 7: 1 MiB chunks, each sent when ready
                buf.chunk_bytes = stream_chunk_bytes_for(buf.size)
            elif CHUNKED in sess.compression:  # section 6.3.2 step 5: split over the chunk threads
                buf.chunk_bytes = chunk_bytes_for(buf.size, CHUNK_THREADS)
            if SHUFFLE in sess.compression and any(b.filter == SHUFFLE for b in frame.buffers) \
                    and FORMATS[buf.format].bytes_per_pixel > 1:
                # section 6.3.3 step 4: byte planes when the engine shuffles its own (1080p rgba8 from the remote
                # bench: 2.17 -> 1.72 MB with lz4, 3.6 ms less of a 1 Gbit/s link, at about the same CPU)
                buf.filter = SHUFFLE
        return buf
