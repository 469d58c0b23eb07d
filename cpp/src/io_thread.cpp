#include "io_thread.hpp"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace nrb::detail {

namespace {

using std::chrono::milliseconds;

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// CPU time of the calling thread in ms (what compressing a buffer costs the machine, whatever else runs).
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

uint64_t monotonic_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

void free_keepalive(void* /*data*/, void* hint) noexcept { delete static_cast<std::shared_ptr<void>*>(hint); }

// A zero-copy ZeroMQ frame over `size` bytes at `data`, keeping `keep` alive until ZeroMQ is done with it (which
// may be on ZeroMQ's own I/O thread).
zmq::message_t borrowed_frame(const uint8_t* data, size_t size, const std::shared_ptr<void>& keep) {
  auto* hint = new std::shared_ptr<void>(keep);
  try {
    return zmq::message_t(const_cast<uint8_t*>(data), size, free_keepalive, hint);
  } catch (...) {
    delete hint;
    throw;
  }
}

std::vector<zmq::message_t> to_parts(const wire::Encoded& enc) {
  std::vector<zmq::message_t> parts;
  parts.reserve(enc.frame_count());
  parts.emplace_back(enc.header.data(), enc.header.size());
  for (const wire::Bytes& p : enc.payloads) parts.emplace_back(p.data, p.size);
  return parts;
}

const char* state_name(int s) {
  static const char* names[] = {"idle", "backoff", "connecting", "handshaking", "connected", "draining", "refused"};
  return names[s];
}

}  // namespace

IoThread::IoThread(const ClientOptions& opts, Pipeline& pipeline, Logger log)
    : opts_(opts),
      pipeline_(pipeline),
      log_(std::move(log)),
      ctx_(1),
      wake_rx_(ctx_, zmq::socket_type::pair),
      wake_tx_(ctx_, zmq::socket_type::pair),
      backoff_ms_(opts.backoff_min_ms) {
  ctx_.set(zmq::ctxopt::blocky, 0);  // sockets left open at shutdown never block the context's destruction
  wake_rx_.set(zmq::sockopt::linger, 0);
  wake_tx_.set(zmq::sockopt::linger, 0);
  // Each client has its own context, so fixed inproc names cannot clash.
  wake_rx_.bind("inproc://nrb-wake");
  wake_tx_.connect("inproc://nrb-wake");
  thread_ = std::thread([this] { run(); });
}

IoThread::~IoThread() {
  stop_.store(true);
  wake_pending_.store(false);
  wake();
  if (thread_.joinable()) thread_.join();
  work_pool_.reset();  // first: its running tasks may still wake() us or hand the pipeline an image
}

ThreadPool& IoThread::work_pool() {
  if (!work_pool_) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    work_pool_ = std::make_unique<ThreadPool>(std::clamp(cores, 2u, 4u), "nrb-pool");
  }
  return *work_pool_;
}

void IoThread::flush_pool_log() {
  std::vector<std::string> lines;
  {
    std::lock_guard<std::mutex> lock(pool_log_mutex_);
    lines.swap(pool_log_);
  }
  for (const std::string& l : lines) log_(LogLevel::warning, l);
}

void IoThread::wake() noexcept {
  if (wake_pending_.exchange(true)) return;
  std::lock_guard<std::mutex> lock(wake_mutex_);
  try {
    (void)wake_tx_.send(zmq::message_t(), zmq::send_flags::dontwait);
  } catch (...) {
  }
}

// ---------------------------------------------------------------------------------------------------------------

void IoThread::run() noexcept {
#ifdef __linux__
  pthread_setname_np(pthread_self(), "nrb-io");  // what top -H and nrb bench remote's CPU profile show
#endif
  std::vector<zmq::message_t> parts;
  while (!stop_.load()) {
    try {
      TimePoint now = Clock::now();
      step(now);

      TimePoint until = next_deadline(now);
      auto timeout = std::chrono::duration_cast<milliseconds>(until - now) + milliseconds(1);
      timeout = std::clamp(timeout, milliseconds(0), milliseconds(100));

      zmq::pollitem_t items[5] = {{wake_rx_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, 0, 0, 0}, {nullptr, 0, 0, 0},
                                  {nullptr, 0, 0, 0}, {nullptr, 0, 0, 0}};
      size_t n = 1;
      if (conn_) {
        short events = ZMQ_POLLIN;
        if (state_ == State::connecting) events |= ZMQ_POLLOUT;
        items[1] = {conn_->socket().handle(), 0, events, 0};
        items[2] = {conn_->monitor().handle(), 0, ZMQ_POLLIN, 0};
        n = 3;
        if (bell_active_) {
          items[3] = {nullptr, bell_->to_engine_fd(), ZMQ_POLLIN, 0};
          items[4] = {nullptr, bell_->to_renderer_fd(), short(bell_->pending() ? ZMQ_POLLOUT : 0), 0};
          n = 5;
        }
      }
      zmq::poll(items, n, timeout);
      now = Clock::now();
      if (n == 5 && (items[3].revents & ZMQ_POLLIN)) ring_doorbell(now);
      if (n == 5 && bell_active_ && (items[4].revents & ZMQ_POLLOUT)) bell_->flush();

      if (items[0].revents & ZMQ_POLLIN) {
        zmq::message_t m;
        while (wake_rx_.recv(m, zmq::recv_flags::dontwait)) {
        }
        // Cleared only after draining: cleared before, a wake() between the two sent a message the drain then
        // swallowed, and the flag stayed set with nothing in the pipe, so every later wake() was skipped and this
        // thread ran only on socket traffic or its 100 ms timeout (a pool thread's finished chunk waited for it: a
        // streamed 1-in-flight session fell to 4-9 fps for the rest of its life). A wake() skipped between the drain
        // and here changed its state before calling wake(): the step() that follows sees it.
        wake_pending_.store(false);
      }
      flush_pool_log();
      // Messages first: answers that arrived before a disconnect must still count (their frames' events were
      // delivered). Bounded batch per iteration so that sending and timers keep their turn.
      for (int i = 0; i < 64 && conn_ && conn_->recv(parts); ++i) handle_message(parts, Clock::now());
      if (conn_ && (items[2].revents & ZMQ_POLLIN) && conn_->poll_monitor() && state_ != State::connecting) {
        while (conn_ && conn_->recv(parts)) handle_message(parts, Clock::now());
        if (conn_) fail("connection to the renderer lost", Clock::now());
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      log_(LogLevel::error, std::string("nrb: ZeroMQ error: ") + e.what());
      try {
        fail(std::string("ZeroMQ error: ") + e.what(), Clock::now());
      } catch (...) {
      }
    } catch (const std::exception& e) {
      log_(LogLevel::error, std::string("nrb: I/O thread: ") + e.what());
      try {
        fail(e.what(), Clock::now());
      } catch (...) {
      }
    } catch (...) {
      try {
        fail("unknown exception", Clock::now());
      } catch (...) {
      }
    }
  }
  try {
    close_session(state_ == State::connected || state_ == State::draining);
  } catch (...) {
  }
}

void IoThread::step(TimePoint now) {
  const bool enabled = pipeline_.enabled();
  switch (state_) {
    case State::idle:
      if (enabled) open_connection(now);
      break;
    case State::backoff:
      if (!enabled)
        state_ = State::idle;
      else if (now >= state_deadline_)
        open_connection(now);
      break;
    case State::connecting:
      if (!enabled) {
        close_session(false);
        state_ = State::idle;
        break;
      }
      try_send_hello(now);
      if (state_ == State::connecting && now >= state_deadline_) {
        std::string why = "no connection to " + target() + " within " +
                          std::to_string(opts_.connect_timeout_ms) + " ms (is `nrb serve` running there?)";
        pipeline_.connection_error(why);
        fail(why, now);
      }
      break;
    case State::handshaking:
      if (!enabled) {
        close_session(false);
        state_ = State::idle;
      } else if (now >= state_deadline_) {
        // Not a refusal: with a lazy ZeroMQ connection this is also what "no renderer there" looks like.
        ++handshake_timeouts_;
        std::string why = "no WELCOME from " + target() + " within " +
                          std::to_string(opts_.handshake_timeout_ms) + " ms (is `nrb serve` running there?)";
        pipeline_.connection_error(why + "; " + std::to_string(handshake_timeouts_) +
                                   (handshake_timeouts_ == 1 ? " attempt" : " attempts") + " so far, retrying");
        fail(why, now);
      }
      break;
    case State::refused:
      if (!enabled) {
        pipeline_.leave_refused();
        state_ = State::idle;
      } else if (pipeline_.take_retry()) {
        pipeline_.leave_refused();
        log_(LogLevel::info, "nrb: asking " + opts_.endpoint + " again after its refusal");
        open_connection(now);
      }
      break;
    case State::connected:
      if (!enabled) {
        // Stop sending at once; let the frames already out be answered, then say goodbye.
        if (pipeline_.in_flight() == 0) {
          close_session(true);
          state_ = State::idle;
        } else {
          state_ = State::draining;
          state_deadline_ = now + milliseconds(static_cast<int64_t>(opts_.deadline_ms) + opts_.server_timeout_ms);
        }
        break;
      }
      send_frames(now);
      keepalive(now);
      break;
    case State::draining:
      if (enabled) {
        state_ = State::connected;
        send_frames(now);
        break;
      }
      flush_outgoing(now);  // frames taken before the disable still go out once compressed (and are answered)
      if (pipeline_.in_flight() == 0 || now >= state_deadline_) {
        close_session(true);
        state_ = State::idle;
      }
      break;
  }
}

TimePoint IoThread::next_deadline(TimePoint now) const {
  TimePoint t = now + milliseconds(100);
  switch (state_) {
    case State::idle:
    case State::refused:
      break;
    case State::backoff:
    case State::connecting:
    case State::handshaking:
    case State::draining:
      t = std::min(t, state_deadline_);
      break;
    case State::connected:
      if (!ping_sent_) t = std::min(t, last_recv_ + milliseconds(opts_.ping_interval_ms));
      t = std::min(t, last_recv_ + milliseconds(opts_.server_timeout_ms));
      break;
  }
  return t;
}

void IoThread::open_connection(TimePoint now) {
  close_session(false);
  worker_.clear();  // every new attempt starts at the configured endpoint (a front door places us again)
  log_(LogLevel::debug, "nrb: connecting to " + opts_.endpoint);
  conn_ = std::make_unique<Connection>(ctx_, opts_, ++conn_counter_);
  if (opts_.offers_shm()) {
    try {
      pool_ = SlotPool::create(opts_.slot_count(), opts_.slot_size());
    } catch (const std::exception& e) {
      log_(LogLevel::warning, std::string("nrb: no shared memory, sending inline: ") + e.what());
      pool_.reset();
    }
  }
  if (pool_) {
    try {
      bell_ = Doorbell::create(Doorbell::default_dir());
    } catch (const std::exception& e) {
      log_(LogLevel::info, std::string("nrb: no doorbell, frame headers go over ZeroMQ: ") + e.what());
      bell_.reset();
    }
  }
  state_ = State::connecting;
  state_deadline_ = now + milliseconds(opts_.connect_timeout_ms);
  try_send_hello(now);
}

void IoThread::try_send_hello(TimePoint now) {
  wire::Hello h;
  h.min_version = 1;
  h.engine = opts_.engine;
  h.engine_version = opts_.engine_version;
  h.client = kClientName;
  if (pool_) h.capabilities.emplace_back("shm");
  if (pool_ && bell_) h.capabilities.emplace_back("doorbell");
  if (opts_.compression != wire::Compression::none) {
    h.capabilities.emplace_back(wire::compression_name(opts_.compression));
    // The strong codec for what we send, the fast one for what comes back: with zstd we also take lz4, so the
    // renderer may return the image with it (nrb serve does: the image is 4x the G-buffers' pixels at a 2x upscale,
    // and lz4 costs both sides about half of zstd's CPU for it). We still compress with the configured codec.
    if (opts_.compression == wire::Compression::zstd) h.capabilities.emplace_back("lz4");
    h.capabilities.emplace_back("chunked");  // section 6.3.2: we decompress chunks in parallel, and send them
    // Section 6.3.4: an image's chunks may come ahead of its RESULT, each decompressed on the pool as it arrives
    // (the renderer's compressing, the link and our decompressing overlap instead of following each other).
    h.capabilities.emplace_back("streamed_output");
    // Section 6.3.5, the other way: our frames' chunks leave in PARTs as each is compressed on the pool, so our
    // compressing, the link and the renderer's decompressing overlap too.
    h.capabilities.emplace_back("streamed_frames");
    // Section 6.3.3: G-buffers of 16-bit and 32-bit texels compress to about half with their byte planes split
    // (the high bytes of neighbouring halves/floats repeat; interleaved, the low bytes break up every match).
    h.capabilities.emplace_back("shuffle");
  }
  h.render_size = opts_.render_size;
  h.output_size = opts_.output_size;
  h.buffers = opts_.buffers;
  if (pool_) h.shm = pool_->spec();
  if (pool_ && bell_) h.doorbell = bell_->spec();
  h.capabilities.emplace_back("redirect");  // section 5.10: we follow a front door's WELCOME redirect
  if (!ticket_.empty()) h.ticket = ticket_;
  if (!opts_.renderer.empty()) h.renderer = opts_.renderer;  // section 5.11
  if (opts_.lossy_quality) h.lossy_output = wire::Hello::LossyOutput{opts_.lossy_codec, opts_.lossy_quality};  // 6.3.1
  if (!send_message(h)) return;  // not connected yet: ZMQ_IMMEDIATE refused it; POLLOUT will tell us
  state_ = State::handshaking;
  state_deadline_ = now + milliseconds(opts_.handshake_timeout_ms);
}

void IoThread::fail(const std::string& why, TimePoint now, bool quick_retry) {
  if (state_ == State::idle || state_ == State::backoff || state_ == State::refused) return;
  log_(LogLevel::warning, "nrb: " + why + " (" + state_name(int(state_)) + "); retrying in " +
                              std::to_string(quick_retry ? 0 : backoff_ms_) + " ms");
  close_session(false);
  state_ = State::backoff;
  state_deadline_ = now + milliseconds(quick_retry ? 0 : backoff_ms_);
  if (!quick_retry) backoff_ms_ = std::min(backoff_ms_ * 2, opts_.backoff_max_ms);
}

void IoThread::close_session(bool say_bye) {
  if (conn_ && say_bye && session_ != 0) {
    wire::Bye bye;
    bye.session = session_;
    bye.reason = pipeline_.enabled() ? "client closing" : "disabled";
    send_message(bye);
    conn_->linger_briefly();
  }
  conn_.reset();
  if (session_ != 0 || pipeline_.session() != 0 || pipeline_.in_flight() != 0) pipeline_.session_ended();
  session_ = 0;
  if (pool_) pool_->unlink();
  pool_.reset();
  pool_spec_.reset();
  bell_.reset();
  bell_active_ = false;
  ping_sent_.reset();
  compression_ = wire::Compression::none;
  allow_lz4_ = allow_zstd_ = allow_jpeg_ = allow_webp_ = allow_chunked_ = allow_shuffle_ = allow_streamed_ = false;
  allow_streamed_frames_ = false;
  discard_all_streamed();  // the PARTs of the session's frames (lost with it)
  outgoing_.clear();  // taken frames still compressing are lost with the session (session_ended counted them)
}

bool IoThread::send_message(const wire::Message& m) {
  if (!conn_) return false;
  wire::Encoded enc;
  wire::encode(m, enc);
  auto parts = to_parts(enc);
  uint64_t bytes = enc.header.size();
  for (const auto& p : enc.payloads) bytes += p.size;
  if (!conn_->send(parts)) return false;
  pipeline_.add_bytes_sent(bytes);
  last_send_ = Clock::now();
  return true;
}

namespace {

// Compresses a frame's inline buffers on `pool` (a pool thread runs this; the I/O thread has gone back to its
// socket): every buffer at once, each in chunks of chunk_bytes_for() when the renderer takes chunks (section
// 6.3.2), so one large buffer also spreads over the pool. A buffer that does not shrink goes raw.
// `store` receives the compressed bytes the payloads then point into, `cpu_ms` the CPU of all pieces, `error` a
// compressor's failure.
void compress_frame(wire::Frame& m, std::vector<std::vector<uint8_t>>& store, double& cpu_ms, std::string& error,
                    wire::Compression codec, int level, bool chunked, bool shuffle, ThreadPool& pool) {
  struct Piece {
    size_t buffer;
    uint64_t at, len;
    std::vector<uint8_t> out;
    std::string error;
    double cpu_ms = 0;
  };
  std::vector<Piece> pieces;
  for (size_t i = 0; i < m.buffers.size(); ++i) {
    const wire::BufferDesc& b = m.buffers[i];
    if (!b.is_inline() || !b.data || b.size == 0) continue;
    const uint64_t per = chunked ? wire::chunk_bytes_for(b.size, pool.threads()) : 0;
    const uint64_t step = per == 0 ? b.size : per;
    for (uint64_t at = 0; at < b.size; at += step) pieces.push_back(Piece{i, at, std::min<uint64_t>(step, b.size - at)});
  }
  std::vector<std::function<void()>> jobs;
  jobs.reserve(pieces.size());
  for (Piece& pc : pieces)
    jobs.emplace_back([&pc, &m, codec, level, shuffle] {
      const double t0 = thread_cpu_ms();  // CPU time, not wall: the cores are what it costs
      try {
        const wire::BufferDesc& b = m.buffers[pc.buffer];
        const unsigned texel = wire::bytes_per_pixel(b.format);
        pc.out = wire::compress(codec, b.data + pc.at, pc.len, level, shuffle && texel > 1 ? texel : 0);
      } catch (const std::exception& e) {
        pc.error = e.what();
      }
      pc.cpu_ms = thread_cpu_ms() - t0;
    });
  pool.run_all(jobs);
  store.resize(m.buffers.size());
  for (size_t k = 0; k < pieces.size();) {
    const size_t i = pieces[k].buffer;
    std::vector<uint64_t> table;
    uint64_t total = 0;
    size_t end = k;
    for (; end < pieces.size() && pieces[end].buffer == i; ++end) {
      if (!pieces[end].error.empty()) error = pieces[end].error;
      cpu_ms += pieces[end].cpu_ms;
      table.push_back(pieces[end].out.size());
      total += pieces[end].out.size();
    }
    wire::BufferDesc& b = m.buffers[i];
    if (error.empty() && total < b.size) {
      std::vector<uint8_t>& bytes = store[i];
      if (end - k == 1) {
        bytes = std::move(pieces[k].out);
      } else {
        bytes.reserve(total);
        for (size_t j = k; j < end; ++j) bytes.insert(bytes.end(), pieces[j].out.begin(), pieces[j].out.end());
        b.chunks = std::move(table);
        b.chunk_bytes = pieces[k].len;
      }
      b.compression = codec;
      b.shuffle = shuffle && wire::bytes_per_pixel(b.format) > 1;  // section 6.3.3, each piece shuffled on its own
      b.payload = bytes.data();
      b.payload_size = bytes.size();
    }
    k = end;
  }
}

/** A RESULT's image whose pixels are in the message itself (inline, or decompressed/decoded on the pool into
 * `out.owned`): kept alive with the message frames `out.data` may point into, until the engine lets go of it. */
std::shared_ptr<ResultImage> message_image(const wire::BufferDesc& out, std::shared_ptr<void> frames,
                                           double server_ms) {
  auto img = std::make_shared<ResultImage>();
  img->pixels = out.data;
  struct Keep {
    std::shared_ptr<void> frames;
    std::shared_ptr<const uint8_t[]> owned;
  };
  img->keepalive = std::make_shared<Keep>(Keep{std::move(frames), out.owned});
  img->width = out.width;
  img->height = out.height;
  img->stride = out.stride;
  img->format = out.format;
  img->server_ms = server_ms;
  return img;
}

}  // namespace

void IoThread::send_frames(TimePoint now) {
  flush_outgoing(now);
  while (conn_) {
    std::optional<OutgoingFrame> out = pipeline_.take_next(now);
    if (!out) break;
    SubmittedFrame& f = out->frame;
    const uint64_t id = f.id;
    if (bell_active_ && (!f.result_slot || std::any_of(f.buffers.begin(), f.buffers.end(),
                                                       [](const wire::BufferDesc& b) { return b.is_inline(); }))) {
      // Section 7.1 rule 3: every FRAME of a doorbell session goes through the FIFO, which carries no pixels.
      log_(LogLevel::debug, "nrb: frame " + std::to_string(id) + " does not fit the shared-memory slots; dropped");
      pipeline_.send_failed(id);
      continue;
    }
    auto o = std::make_shared<Outgoing>();
    o->id = id;
    wire::Frame& m = o->msg;
    m.session = out->session;
    m.frame = id;
    m.time_ns = f.time_ns;
    m.dt = f.dt;
    m.deadline_ms = f.deadline_ms;
    m.camera = std::move(f.camera);
    m.buffers = std::move(f.buffers);
    m.events = std::move(out->events);
    m.styles = std::move(out->styles);
    m.controls = std::move(out->controls);
    m.result_slot = f.result_slot;
    // Section 5.2: buffers the renderer did not ask for in WELCOME are not sent.
    // A renderer that lists nothing did not say (section 5.2): it gets everything offered.
    if (!wanted_.empty())
      m.buffers.erase(std::remove_if(m.buffers.begin(), m.buffers.end(),
                                     [&](const wire::BufferDesc& b) { return !contains(wanted_, b.name); }),
                      m.buffers.end());
    struct Keep {
      std::shared_ptr<FrameResources> resources;
      std::vector<std::vector<uint8_t>> compressed;
    };
    auto keep = std::make_shared<Keep>();
    keep->resources = f.resources;
    o->keep = keep;
    for (const wire::BufferDesc& b : m.buffers)
      if (b.is_inline() && b.data) o->raw_bytes += b.size;
    if (compression_ != wire::Compression::none && o->raw_bytes > 0 && compress_this_frame(o->raw_bytes)) {
      o->compressed = true;
      int level = opts_.compression_level;
      if (level == 0 && compression_ == wire::Compression::zstd) level = 1;
      ThreadPool& pool = work_pool();
      const wire::Compression codec = compression_;
      const bool chunked = allow_chunked_;
      const bool shuffle = allow_shuffle_;
      // Section 6.3.5 step 6: every 16th compressed frame goes whole, the frames the link is measured by (learn()).
      if (allow_streamed_frames_ && ++est_.compressed_frames % 16 != 0) {
        stream_frame(o, keep, codec, level, shuffle);
      } else {
        pool.post([this, o, keep, codec, level, chunked, shuffle, &pool] {
          compress_frame(o->msg, keep->compressed, o->compress_cpu_ms, o->error, codec, level, chunked, shuffle,
                         pool);
          o->ready.store(true);
          wake();
        });
      }
    } else {
      o->ready.store(true);
    }
    outgoing_.push_back(std::move(o));
  }
  flush_outgoing(now);
}

void IoThread::stream_frame(const std::shared_ptr<Outgoing>& o, std::shared_ptr<void> resources,
                            wire::Compression codec, int level, bool shuffle) {
  o->streamed = true;
  for (size_t i = 0; i < o->msg.buffers.size(); ++i) {
    wire::BufferDesc& b = o->msg.buffers[i];
    if (!b.is_inline() || !b.data || b.size == 0) continue;
    // Every such buffer goes compressed, even one that turns out not to shrink (compress_frame sends those raw):
    // its first PARTs are out before its last chunk is compressed, so there is no going back. What it costs is
    // the codec's framing, a few bytes a chunk.
    const uint64_t per = wire::stream_chunk_bytes_for(b.size);
    const unsigned bpp = wire::bytes_per_pixel(b.format);
    const unsigned texel = shuffle && bpp > 1 ? bpp : 0;  // section 6.3.3, each chunk shuffled on its own
    b.compression = codec;
    b.chunk_bytes = per;
    b.shuffle = texel > 1;
    b.streamed = true;                             // no payload frame: its PARTs carry it
    b.chunks.assign((b.size + per - 1) / per, 0);  // each entry set as its PART leaves (send_parts)
    b.payload = nullptr;
    b.payload_size = 0;
    for (uint64_t at = 0, index = 0; at < b.size; at += per, ++index) {
      auto pc = std::make_shared<StreamPiece>();
      pc->buffer = i;
      pc->index = index;
      pc->raw = b.data + at;
      pc->len = std::min(per, b.size - at);
      pc->texel = texel;
      o->pieces.push_back(std::move(pc));
    }
  }
  // One task per piece, posted in order: the pool takes them first in, first out, so a frame's pieces are
  // compressed before the next frame's, and the front frame's PARTs are what comes ready first. A task touches its
  // piece only (the I/O thread owns the message), and never the socket: it wakes this thread, which sends.
  ThreadPool& pool = work_pool();
  for (const std::shared_ptr<StreamPiece>& pc : o->pieces)
    pool.post([this, pc, resources, codec, level] {
      const double t0 = thread_cpu_ms();  // CPU time, not wall: the cores are what it costs
      try {
        pc->out = wire::compress(codec, pc->raw, pc->len, level, pc->texel);
      } catch (const std::exception& e) {
        pc->error = e.what();
      }
      pc->cpu_ms = thread_cpu_ms() - t0;
      pc->ready.store(true);  // publishes out, error and cpu_ms to the I/O thread
      wake();
    });
}

IoThread::PartsSent IoThread::send_parts(Outgoing& o, TimePoint now) {
  PartsSent r;
  try {
    // Those ready, in index order; any order is allowed (section 6.3.5 step 2), so a slow piece holds back none.
    for (const std::shared_ptr<StreamPiece>& pc : o.pieces) {
      if (pc->sent || !pc->ready.load()) continue;
      if (!pc->error.empty()) {
        o.error = pc->error;
        return r;
      }
      wire::BufferDesc& b = o.msg.buffers[pc->buffer];
      wire::Part p;
      p.session = o.msg.session;
      p.frame = o.id;
      p.buffer = b.name;
      p.index = pc->index;
      p.payload = pc->out.data();
      p.payload_size = pc->out.size();
      wire::Encoded enc;
      wire::encode(wire::Message(std::move(p)), enc);
      std::vector<zmq::message_t> parts;
      parts.reserve(2);
      parts.emplace_back(enc.header.data(), enc.header.size());
      parts.push_back(borrowed_frame(pc->out.data(), pc->out.size(), std::shared_ptr<void>(pc)));
      if (!conn_->send(parts)) {
        r.refused = true;  // the high-water mark: as a FRAME the socket does not take
        return r;
      }
      pc->sent = true;
      ++o.pieces_sent;
      o.part_bytes += enc.header.size() + pc->out.size();
      o.part_payload_bytes += pc->out.size();
      b.chunks[pc->index] = pc->out.size();
      o.compress_cpu_ms += pc->cpu_ms;
      last_send_ = now;
    }
  } catch (const std::exception& e) {
    o.error = e.what();
    return r;
  }
  r.done = o.pieces_sent == o.pieces.size();
  return r;
}

void IoThread::flush_outgoing(TimePoint now) {
  while (conn_ && !outgoing_.empty()) {
    Outgoing& front = *outgoing_.front();
    bool refused = false;
    if (front.streamed) {
      const PartsSent parts = send_parts(front, now);
      refused = parts.refused;
      // Pieces still compressing: the frames behind it wait, their PARTs only after this FRAME (6.3.5 step 2).
      if (!parts.done && !refused && front.error.empty()) return;
    } else if (!front.ready.load()) {
      return;
    }
    std::shared_ptr<Outgoing> o = std::move(outgoing_.front());
    outgoing_.pop_front();
    const uint64_t id = o->id;
    bool written = false;
    uint64_t bytes = 0;
    try {
      if (!o->error.empty()) throw std::runtime_error(o->error);
      // A PART the socket did not take (its high-water mark) drops the frame as a FRAME it does not take would.
      if (!refused) {
        if (o->compressed) {
          uint64_t wire_bytes = o->part_payload_bytes;  // the streamed buffers', in their PARTs
          for (const wire::BufferDesc& b : o->msg.buffers)
            if (b.is_inline()) wire_bytes += b.compression != wire::Compression::none ? b.payload_size : b.size;
          const double ratio = double(wire_bytes) / double(o->raw_bytes);
          est_.ratio = est_.compress_bytes_per_ms == 0 ? ratio : est_.ratio + 0.3 * (ratio - est_.ratio);
          if (est_.compress_bytes_per_ms == 0)  // until a RESULT tells the rest of the chain: this side's cost
            est_.compress_bytes_per_ms = double(o->raw_bytes) / std::max(0.01, o->compress_cpu_ms);
        }
        wire::Encoded enc;
        wire::encode(wire::Message(std::move(o->msg)), enc);
        if (bell_active_) {
          bell_->send(enc.header.data(), enc.header.size());
          pipeline_.sent(id, enc.header.size() + wire::kDoorbellLengthBytes);
          last_send_ = now;
          continue;
        }
        std::vector<zmq::message_t> parts;
        parts.reserve(enc.frame_count());
        parts.emplace_back(enc.header.data(), enc.header.size());
        bytes = enc.header.size();
        for (const wire::Bytes& p : enc.payloads) {
          parts.push_back(borrowed_frame(p.data, p.size, o->keep));
          bytes += p.size;
        }
        written = conn_->send(parts);
      }
    } catch (const std::exception& e) {
      log_(LogLevel::error, std::string("nrb: cannot send frame ") + std::to_string(id) + ": " + e.what());
    }
    if (!written) {
      // PARTs that left before the failure crossed the link all the same; the renderer drops them when a later
      // FRAME comes (section 6.3.5 step 4).
      if (o->part_bytes > 0) pipeline_.add_bytes_sent(o->part_bytes);
      pipeline_.send_failed(id);
      return;
    }
    // A streamed frame's PARTs are its bytes too: the frame's share of the link is all of them.
    bytes += o->part_bytes;
    pipeline_.sent(id, bytes);
    // every frame: the link's throughput decides compression and how many frames to keep in flight (learn(); a
    // streamed frame's sample is not taken, see there)
    if (sent_.size() >= 64) sent_.erase(sent_.begin());
    sent_.push_back(SentFrame{id, Clock::now(), bytes, o->raw_bytes,
                              o->compressed ? std::max(0.01, o->compress_cpu_ms) : 0.0, o->streamed});
    last_send_ = now;
  }
}

void IoThread::keepalive(TimePoint now) {
  if (!conn_) return;
  if (!ping_sent_ && now - last_recv_ >= milliseconds(opts_.ping_interval_ms)) {
    wire::Ping p;
    p.nonce = ++ping_nonce_;
    p.time_ns = monotonic_ns();
    if (send_message(p)) ping_sent_ = now;
  }
  std::optional<TimePoint> since = ping_sent_;
  if (auto oldest = pipeline_.oldest_in_flight_sent()) since = since ? std::min(*since, *oldest) : *oldest;
  if (since && now - std::max(*since, last_recv_) > milliseconds(opts_.server_timeout_ms))
    fail("the renderer has been silent for " + std::to_string(opts_.server_timeout_ms) + " ms", now);
}

// ---------------------------------------------------------------------------------------------------------------

void IoThread::ring_doorbell(TimePoint now) {
  std::vector<std::vector<uint8_t>> records;
  const bool intact = bell_->receive(records);
  for (auto& rec : records) {
    std::vector<zmq::message_t> parts;
    parts.emplace_back(rec.data(), rec.size());
    handle_message(parts, now, /*from_doorbell=*/true);
    if (!bell_active_) return;  // the session ended while handling it
  }
  if (!intact) fail("the doorbell stream from the renderer is corrupt", now);
}

void IoThread::handle_message(std::vector<zmq::message_t>& parts, TimePoint now, bool from_doorbell) {
  auto held = std::make_shared<std::vector<zmq::message_t>>(std::move(parts));
  parts.clear();
  std::vector<wire::Bytes> views;
  views.reserve(held->size());
  uint64_t bytes = 0;
  for (auto& m : *held) {
    views.emplace_back(m.data(), m.size());
    bytes += m.size();
  }
  pipeline_.add_bytes_received(bytes);

  wire::DecodeOptions o;
  o.allow_lz4 = allow_lz4_;
  o.allow_zstd = allow_zstd_;
  o.allow_jpeg = allow_jpeg_;
  o.allow_webp = allow_webp_;
  o.allow_chunked = allow_chunked_;
  o.allow_shuffle = allow_shuffle_;
  o.allow_streamed_output = allow_streamed_;
  o.defer_decompression = true;  // a RESULT image is decompressed or decoded on the pool (decode_image_on_pool)
  o.shm_pool = pool_spec_ ? &*pool_spec_ : nullptr;
  const auto t_decode = Clock::now();
  wire::DecodeResult r = wire::decode(views, o);
  last_decode_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - t_decode).count();
  if (!r) {
    pipeline_.count_error();
    log_(LogLevel::warning, "nrb: ignoring an invalid message from the renderer: " +
                                std::string(wire::error_name(r.error.code)) + ": " + r.error.message);
    return;  // garbage does not count as a sign of life
  }
  last_recv_ = now;
  wire::Message& m = *r.message;
  if (from_doorbell && wire::message_type(m) != wire::MessageType::result &&
      wire::message_type(m) != wire::MessageType::error) {
    fail("the renderer sent a " + std::string(wire::type_name(wire::message_type(m))) +
             " on the doorbell (only RESULT and ERROR belong there)",
         now);
    return;
  }
  switch (wire::message_type(m)) {
    case wire::MessageType::welcome:
      if (state_ == State::handshaking) handle_welcome(std::get<wire::Welcome>(m), now);
      break;
    case wire::MessageType::result:
      if (state_ == State::connected || state_ == State::draining) handle_result(std::get<wire::Result>(m), held, now);
      break;
    case wire::MessageType::part:
      if (state_ == State::connected || state_ == State::draining) handle_part(std::get<wire::Part>(m), held);
      break;
    case wire::MessageType::error:
      handle_error(std::get<wire::Error>(m), now);
      break;
    case wire::MessageType::ping: {
      const auto& p = std::get<wire::Ping>(m);
      wire::Pong pong;
      pong.nonce = p.nonce;
      pong.time_ns = p.time_ns;
      send_message(pong);
      break;
    }
    case wire::MessageType::pong:
      if (std::get<wire::Pong>(m).nonce == ping_nonce_) ping_sent_.reset();
      break;
    case wire::MessageType::bye:
      if (state_ == State::connected || state_ == State::draining || state_ == State::handshaking)
        fail("the renderer closed the session", now, /*quick_retry=*/true);
      break;
    default:
      log_(LogLevel::debug, "nrb: ignoring an engine-side message type from the renderer");
      break;
  }
}

void IoThread::handle_welcome(const wire::Welcome& w, TimePoint now) {
  if (w.redirect) {
    follow_redirect(*w.redirect, now);
    return;
  }
  session_ = w.session;
  bool shm_ok = pool_ && contains(w.capabilities, "shm");
  if (pool_) pool_->unlink();  // section 7 rule 4: both mappings stay valid, the kernel reclaims on exit
  if (bell_) bell_->unlink();  // section 7.1 rule 2, likewise
  if (shm_ok) {
    pool_spec_ = pool_->spec();
  } else {
    pool_.reset();
    pool_spec_.reset();
  }
  bell_active_ = shm_ok && bell_ && contains(w.capabilities, "doorbell");
  if (!bell_active_) bell_.reset();
  compression_ = wire::Compression::none;
  if (opts_.compression != wire::Compression::none &&
      contains(w.capabilities, wire::compression_name(opts_.compression)))
    compression_ = opts_.compression;
  allow_lz4_ = contains(w.capabilities, "lz4");
  allow_zstd_ = contains(w.capabilities, "zstd");
  allow_chunked_ = opts_.compression != wire::Compression::none && contains(w.capabilities, "chunked");
  allow_shuffle_ = opts_.compression != wire::Compression::none && contains(w.capabilities, "shuffle");
  allow_streamed_ = allow_chunked_ && contains(w.capabilities, "streamed_output");  // offered with "chunked"
  // offered with "chunked" too; never on a doorbell session (its FRAMEs carry no pixels), whatever WELCOME says
  allow_streamed_frames_ = allow_chunked_ && !bell_active_ && contains(w.capabilities, "streamed_frames");
  // section 6.3.1: only the codec this client asked for
  allow_jpeg_ = opts_.lossy_quality != 0 && opts_.lossy_codec == "jpeg" && contains(w.capabilities, "jpeg");
  allow_webp_ = opts_.lossy_quality != 0 && opts_.lossy_codec == "webp" && contains(w.capabilities, "webp");
  output_ = w.output;
  est_ = CompressionEstimate{};  // a new session may be over another link
  sent_.clear();
  wanted_.clear();
  for (const auto* list : {&w.required, &w.optional}) {
    for (const wire::BufferSpec& b : *list) {
      wanted_.push_back(b.name);
      // the buffers section 5.2 lets a wanted one be derived from
      if (b.name == "normals") wanted_.insert(wanted_.end(), {"normal_roughness", "normals_oct"});
      if (b.name == "roughness") wanted_.insert(wanted_.end(), {"normal_roughness", "roughness_metallic"});
      if (b.name == "metallic") wanted_.push_back("roughness_metallic");
    }
  }
  for (const auto& req : w.required) {
    bool have = std::any_of(opts_.buffers.begin(), opts_.buffers.end(),
                            [&](const wire::BufferSpec& b) { return b.name == req.name; });
    if (!have)
      log_(LogLevel::warning, "nrb: the renderer requires buffer \"" + req.name + "\", which is not configured");
  }
  uint32_t max_in_flight = static_cast<uint32_t>(std::min<uint64_t>(w.max_in_flight, wire::kMaxInFlight));
  pipeline_.session_started(session_, max_in_flight, shm_ok ? pool_ : nullptr, compression_, bell_active_);
  if (had_session_) pipeline_.count_reconnect();
  had_session_ = true;
  handshake_timeouts_ = 0;
  backoff_ms_ = opts_.backoff_min_ms;
  state_ = State::connected;
  last_recv_ = now;
  ping_sent_.reset();
  log_(LogLevel::info, "nrb: session " + std::to_string(session_) + " with " + w.renderer + " (shm " +
                           (shm_ok ? "on" : "off") + ", doorbell " + (bell_active_ ? "on" : "off") + ", compression " +
                           (compression_ == wire::Compression::none ? std::string("off")
                                                                    : std::string(wire::compression_name(compression_))) +
                           ", max_in_flight " + std::to_string(max_in_flight) + ")");
}

// Section 5.10: the front door placed the session on a worker. The pool and doorbell offered in HELLO stay ours
// (not unlinked: the worker maps them by name); the front door's connection closes, and the same HELLO, with the
// ticket, goes to the worker. A worker that redirects again is a failure (no chains), as is a worker that does not
// answer: either way the next attempt starts at the front door again.
void IoThread::follow_redirect(const wire::Redirect& r, TimePoint now) {
  if (!worker_.empty()) {
    fail("the worker at " + worker_ + " redirected again, to " + r.endpoint, now);
    return;
  }
  log_(LogLevel::debug, "nrb: " + opts_.endpoint + " placed the session on " + r.endpoint);
  ticket_ = r.ticket;
  worker_ = r.endpoint;
  conn_ = std::make_unique<Connection>(ctx_, opts_, ++conn_counter_, worker_);
  state_ = State::connecting;
  state_deadline_ = now + milliseconds(opts_.connect_timeout_ms);
  try_send_hello(now);
}

bool IoThread::compress_this_frame(uint64_t raw_bytes) {
  const CompressionEstimate& e = est_;
  if (e.link_bytes_per_ms <= 0 || e.compress_bytes_per_ms <= 0) return true;  // measure first
  const double compress_ms = double(raw_bytes) / e.compress_bytes_per_ms;  // the whole chain's CPU
  const double raw_link_ms = double(raw_bytes) / e.link_bytes_per_ms;
  static const double cores = std::max(1u, std::thread::hardware_concurrency());
  if (compression_pays(compress_ms, raw_link_ms, e.ratio, pipeline_.in_flight_limit() > 1, cores)) {
    est_.raw_frames = 0;
    return true;
  }
  return ++est_.raw_frames % 16 == 0;  // now and then, to notice when the link or the content changes
}

uint64_t IoThread::learn(const wire::Result& r, uint64_t result_bytes, TimePoint now) {
  auto it = std::find_if(sent_.begin(), sent_.end(), [&](const SentFrame& f) { return f.id == r.frame; });
  if (it == sent_.end()) return 0;
  const SentFrame f = *it;
  sent_.erase(sent_.begin(), it + 1);
  if (f.compress_cpu_ms > 0 && f.raw_bytes > 0 && r.output) {
    // the whole chain's cost of this compressed frame: here, the renderer's decode + encode, the image's decode here.
    // A lossy image (section 6.3.1) is encoded and decoded whether or not the frame was compressed: not a cost of
    // compressing (counting it made a lossy session send its frames raw).
    const bool lossy_image = wire::is_image_codec(r.output->compression);
    const double chain =
        f.compress_cpu_ms + r.timing.decode_ms + (lossy_image ? 0.0 : r.timing.encode_ms + image_decode_ms_.load());
    const double speed = double(f.raw_bytes) / std::max(0.01, chain);
    est_.compress_bytes_per_ms += 0.3 * (speed - est_.compress_bytes_per_ms);
  }
  // A streamed frame (section 6.3.5) tells nothing true about the link: its chunks crossed while later ones were
  // still compressing, so its time from the FRAME hides them where compressing is the slower stage (on the 1 Gbit/s
  // bench link the link then looked fast enough to send raw, and some frames went raw at 5.4 MB), and its time from
  // its first PART adds the compressing (a 10 Gbit/s link looked like 250 MB/s and every frame stayed compressed:
  // 34 fps where raw makes 56). The whole frames among them (every 16th) measure it.
  if (f.streamed) return f.bytes;
  // link time: the round trip less the renderer's own time and less decoding the answer here
  const double link_ms =
      std::chrono::duration<double, std::milli>(now - f.sent).count() - r.timing.total_ms - last_decode_ms_;
  const uint64_t bytes = f.bytes + result_bytes;
  if (link_ms <= 0.05 || bytes < 65536) return f.bytes;  // too small to say anything about the link
  // Waiting behind other frames (in the engine's send queue, in a busy renderer) only ever makes a sample slower
  // than the link: keep the fastest recent one, forgetting slowly (2% a frame) so a slower link is noticed.
  const double speed = double(bytes) / link_ms;
  est_.link_bytes_per_ms = std::max(speed, est_.link_bytes_per_ms * 0.98);
  return f.bytes;
}

void IoThread::handle_result(wire::Result& r, std::shared_ptr<void> frames, TimePoint now) {
  if (r.session != session_) return;  // from an earlier session
  // Section 6.3.4 step 3: the RESULT ends its frame's PARTs, whatever it says (skipped: they are discarded).
  StreamedFrame parts;
  if (auto it = streamed_.find(r.frame); it != streamed_.end()) {
    parts = std::move(it->second);
    streamed_.erase(it);
  }
  const bool streamed = r.output && r.output->streamed;
  if (!streamed) drop_chunks(parts);
  const uint64_t down = streamed ? parts.bytes
                        : r.output && r.output->is_inline()
                            ? (r.output->compression != wire::Compression::none ? r.output->payload_size
                                                                                : r.output->size)
                            : 0;
  const uint64_t up = learn(r, down, now);
  ServerTiming timing{r.timing.queue_ms, r.timing.total_ms};
  // the link's busier direction holds this frame max(up, down) / rate (each direction has the whole rate, and the
  // measured rate is (up + down) / link time of an unqueued frame): the adaptive limit's bottleneck on a slow link
  if (est_.link_bytes_per_ms > 0 && up + down > 0) {
    timing.link_busy_ms = double(std::max(up, down)) / est_.link_bytes_per_ms;
    timing.link_share = double(std::max(up, down)) / double(up + down);
  }
  if (r.status == wire::ResultStatus::skipped || !r.output) {
    pipeline_.on_result(r.frame, nullptr, now, timing);
    return;
  }
  wire::BufferDesc& out = *r.output;
  if (out.width != output_.width || out.height != output_.height || out.format != output_.format) {
    // A hostile or broken renderer: the engine sizes its textures from WELCOME, so never hand it anything else.
    log_(LogLevel::warning, "nrb: RESULT for frame " + std::to_string(r.frame) + " is " + std::to_string(out.width) +
                                "x" + std::to_string(out.height) + " " + std::string(wire::format_name(out.format)) +
                                ", the session announced " + std::to_string(output_.width) + "x" +
                                std::to_string(output_.height) + " " + std::string(wire::format_name(output_.format)) +
                                "; not shown");
    drop_chunks(parts);
    pipeline_.on_frame_error(r.frame, wire::ErrorCode::BAD_VALUE);
    return;
  }
  if (streamed) {
    if (!pipeline_.is_in_flight(r.frame)) {  // lost or answered already: its PARTs were not kept, nothing to show
      drop_chunks(parts);
      pipeline_.on_result(r.frame, nullptr, now, timing);
      return;
    }
    assemble_streamed(std::move(out), std::move(parts), std::move(frames), r.frame, timing, r.timing.total_ms);
    return;
  }
  if (!out.shm && out.compression != wire::Compression::none && out.data == nullptr) {
    // Compressed or lossy: decompressed (its chunks in parallel) or decoded on the pool, never on this thread
    // (section 6.3.2); the pool hands the image to the pipeline when it is done.
    decode_image_on_pool(std::move(out), std::move(frames), r.frame, timing, r.timing.total_ms);
    return;
  }
  if (!out.shm) {
    pipeline_.on_result(r.frame, message_image(out, std::move(frames), r.timing.total_ms), now, timing);
    return;
  }
  std::optional<uint64_t> slot = pipeline_.result_slot_of(r.frame);
  if (!pool_ || !slot || *slot != out.shm->slot) {
    log_(LogLevel::warning, "nrb: RESULT for frame " + std::to_string(r.frame) +
                                " points outside the frame's result slot; not shown");
    pipeline_.on_frame_error(r.frame, wire::ErrorCode::BAD_VALUE);
    return;
  }
  auto img = std::make_shared<ResultImage>();
  img->pixels = pool_->slot_data(static_cast<uint32_t>(out.shm->slot)) + out.shm->offset;
  img->width = out.width;
  img->height = out.height;
  img->stride = out.stride;
  img->format = out.format;
  img->server_ms = r.timing.total_ms;
  pipeline_.on_result(r.frame, std::move(img), now, timing);
}

void IoThread::decode_image_on_pool(wire::BufferDesc out, std::shared_ptr<void> frames, uint64_t frame,
                                    ServerTiming timing, double server_ms) {
  ThreadPool& pool = work_pool();
  pool.post([this, out = std::move(out), frames = std::move(frames), frame, timing, server_ms, &pool]() mutable {
    const auto t0 = Clock::now();
    const wire::ParallelRunner run = [&pool](std::vector<std::function<void()>>& jobs) { pool.run_all(jobs); };
    const std::optional<wire::DecodeError> err = wire::inflate(out, &run);
    if (err) {
      image_failed(frame, *err);
      return;
    }
    if (!wire::is_image_codec(out.compression)) {
      // the chain's cost of a lossless image: wall time x the threads its chunks could use (an estimate of CPU)
      const double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      const double threads = std::min<double>(std::max<size_t>(1, out.chunks.size()), pool.threads());
      image_decode_ms_.store(wall * threads);
    }
    pipeline_.on_result(frame, message_image(out, std::move(frames), server_ms), Clock::now(), timing);
  });
}

void IoThread::image_failed(uint64_t frame, const wire::DecodeError& err) {
  pipeline_.count_error();
  pipeline_.on_frame_error(frame, err.code);
  {
    std::lock_guard<std::mutex> lock(pool_log_mutex_);
    if (pool_log_.size() < 64)
      pool_log_.push_back("nrb: RESULT for frame " + std::to_string(frame) + " not shown: " +
                          std::string(wire::error_name(err.code)) + ": " + err.message);
  }
  wake();
}

// ---------------------------------------------------------------------------------------------------------------
// Streamed images (section 6.3.4)

namespace {

// Decompresses a PART's chunk ahead of its RESULT at the size its frame announces (set by the I/O thread in
// `codec`/`raw_size`), unless another thread has claimed it; does not wait for one that has.
void decompress_ahead(StreamChunk& c) {
  int idle = 0;
  if (!c.state.compare_exchange_strong(idle, 1)) return;
  const double t0 = thread_cpu_ms();
  try {
    c.raw.reset(new uint8_t[c.raw_size]);  // bounded by the I/O thread: within the output image's size
    c.error = wire::inflate_chunk(c.codec, c.in, c.n, c.raw.get(), c.raw_size);
  } catch (const std::bad_alloc&) {
    c.raw.reset();
    c.codec = wire::Compression::none;  // the RESULT's task tries once more, at the size the table says
  }
  c.cpu_ms = thread_cpu_ms() - t0;
  {
    std::lock_guard<std::mutex> lock(c.m);
    c.state.store(2);
  }
  c.cv.notify_all();
}

// The RESULT's side: claims the chunk's decompression (it then does nothing: the caller decompresses at the
// descriptor's size) or waits for the thread that runs it. True: it was decompressed ahead, `raw` etc. are set.
bool claim_or_wait(StreamChunk& c) {
  int idle = 0;
  if (c.state.compare_exchange_strong(idle, 2)) return false;
  std::unique_lock<std::mutex> lock(c.m);
  c.cv.wait(lock, [&] { return c.state.load() == 2; });
  return c.codec != wire::Compression::none && c.raw != nullptr;
}

}  // namespace

void IoThread::handle_part(const wire::Part& p, std::shared_ptr<void> frames) {
  // Step 5: only for a frame of this session in flight (anything else: an unknown or abandoned frame).
  if (p.session != session_ || !pipeline_.is_in_flight(p.frame)) return;
  auto it = streamed_.find(p.frame);
  if (it == streamed_.end()) {
    // A frame's first PART: forget the PARTs of frames no longer in flight (lost, or answered without a RESULT
    // reaching us), so what is held stays bounded by the frames in flight.
    for (auto old = streamed_.begin(); old != streamed_.end();) {
      if (pipeline_.is_in_flight(old->first)) {
        ++old;
        continue;
      }
      drop_chunks(old->second);
      old = streamed_.erase(old);
    }
    it = streamed_.emplace(p.frame, StreamedFrame{}).first;
  }
  StreamedFrame& s = it->second;
  if (!s.broken.empty()) return;  // its RESULT fails anyway
  const uint64_t image = uint64_t(output_.width) * output_.height * wire::bytes_per_pixel(output_.format);
  const uint64_t limit = 2 * image + (uint64_t(1) << 20);
  auto breaks = [&](std::string why) {
    s.broken = std::move(why);
    drop_chunks(s);
    s.chunks.shrink_to_fit();
  };
  if (s.parts + 1 > wire::kMaxChunks) return breaks("more than " + std::to_string(wire::kMaxChunks) + " PARTs arrived");
  if (s.bytes + p.payload_size > limit)
    return breaks("the PARTs hold more than " + std::to_string(limit) + " bytes (2 x the output size + 1 MiB)");
  ++s.parts;
  s.bytes += p.payload_size;
  if (s.chunks.size() <= p.index) s.chunks.resize(p.index + 1);
  if (s.chunks[p.index]) return breaks("chunks[" + std::to_string(p.index) + "]: two PARTs arrived");
  auto c = std::make_shared<StreamChunk>();
  c->message = std::move(frames);
  c->in = p.payload;
  c->n = p.payload_size;
  s.chunks[p.index] = c;
  // Step 6: decompressed now, on the pool, at the size the codec frame announces, within bounds: at most a chunk's
  // (2^30) and, over all the frame's chunks, the output image's. Beyond (a padded stride, a lying frame) the
  // RESULT's task decompresses it at the size its table says, or reports why not.
  const std::optional<wire::FramePeek> peek = wire::peek_frame(c->in, c->n);
  if (!peek || peek->content_size == 0 || peek->content_size > wire::kMaxChunkBytes ||
      peek->content_size > image - std::min(image, s.ahead_bytes))
    return;
  s.ahead_bytes += peek->content_size;
  c->codec = peek->codec;
  c->raw_size = peek->content_size;
  work_pool().post([c] { decompress_ahead(*c); });
}

void IoThread::drop_chunks(StreamedFrame& s) {
  for (auto& c : s.chunks)
    if (c) c->cancel();
  s.chunks.clear();
}

void IoThread::discard_streamed(uint64_t frame) {
  auto it = streamed_.find(frame);
  if (it == streamed_.end()) return;
  drop_chunks(it->second);
  streamed_.erase(it);
}

void IoThread::discard_all_streamed() {
  for (auto& [frame, s] : streamed_) drop_chunks(s);
  streamed_.clear();
}

void IoThread::assemble_streamed(wire::BufferDesc out, StreamedFrame parts, std::shared_ptr<void> frames,
                                 uint64_t frame, ServerTiming timing, double server_ms) {
  // Step 4, before anything is decompressed: exactly the indexes 0..n-1, each as long as its table entry.
  const size_t n = out.chunks.size();
  std::string why = parts.broken;
  for (size_t i = 0; why.empty() && i < parts.chunks.size(); ++i) {
    const StreamChunk* c = parts.chunks[i].get();
    if (i >= n && c)
      why = "a PART arrived for chunks[" + std::to_string(i) + "], the table has " + std::to_string(n) + " entries";
    else if (i < n && c && c->n != out.chunks[i])
      why = "chunks[" + std::to_string(i) + "]: the PART holds " + std::to_string(c->n) + " bytes, the table says " +
            std::to_string(out.chunks[i]);
  }
  for (size_t i = 0; why.empty() && i < n; ++i)
    if (i >= parts.chunks.size() || !parts.chunks[i]) why = "chunks[" + std::to_string(i) + "]: no PART arrived";
  if (!why.empty()) {
    drop_chunks(parts);
    image_failed(frame, wire::DecodeError{wire::ErrorCode::PAYLOAD_MISMATCH, out.name + ": " + why});
    return;
  }
  parts.chunks.resize(n);
  ThreadPool& pool = work_pool();
  pool.post([this, out = std::move(out), chunks = std::move(parts.chunks), frames = std::move(frames), frame, timing,
             server_ms, &pool]() mutable {
    const uint64_t size = out.byte_size();  // checked against the limits by decode()
    const unsigned texel = out.shuffle ? wire::bytes_per_pixel(out.format) : 0;
    std::shared_ptr<uint8_t[]> image;
    try {
      image.reset(new uint8_t[size]);
    } catch (const std::bad_alloc&) {
      for (auto& c : chunks) c->cancel();
      image_failed(frame, wire::DecodeError{wire::ErrorCode::INTERNAL, "out of memory"});
      return;
    }
    const size_t k = chunks.size();
    std::vector<std::string> errors(k);
    std::vector<double> cpu(k);
    std::vector<std::function<void()>> jobs;
    jobs.reserve(k);
    for (size_t i = 0; i < k; ++i)
      jobs.emplace_back([&, i] {
        StreamChunk& c = *chunks[i];
        const uint64_t raw_at = i * out.chunk_bytes;
        const uint64_t raw_len = std::min(out.chunk_bytes, size - raw_at);
        uint8_t* dst = image.get() + raw_at;
        const bool ahead = claim_or_wait(c);  // waiting only ever for a thread already decompressing it
        const double t0 = thread_cpu_ms();
        if (ahead && c.codec == out.compression && c.raw_size == raw_len) {
          errors[i] = c.error;
          if (errors[i].empty() && texel > 1)
            wire::unshuffle_bytes(c.raw.get(), dst, raw_len, texel);  // section 6.3.3
          else if (errors[i].empty())
            std::memcpy(dst, c.raw.get(), raw_len);
        } else {
          // Not decompressed ahead, or as another codec or size than the table says: the chunk checks of 6.3.2
          // step 4 at the descriptor's size (they reject it before decompressing when its frame disagrees).
          errors[i] = wire::inflate_chunk(out.compression, c.in, c.n, dst, raw_len, texel);
        }
        c.raw.reset();
        cpu[i] = c.cpu_ms + (thread_cpu_ms() - t0);
        if (!errors[i].empty()) errors[i] = "chunks[" + std::to_string(i) + "]: " + errors[i];
      });
    pool.run_all(jobs);
    for (const std::string& e : errors)
      if (!e.empty()) {
        image_failed(frame, wire::DecodeError{wire::ErrorCode::PAYLOAD_MISMATCH, out.name + ": " + e});
        return;
      }
    // the chain's cost of this lossless image: the CPU its chunks took here, ahead of the RESULT or now
    double total = 0;
    for (double ms : cpu) total += ms;
    image_decode_ms_.store(total);
    out.data = image.get();
    out.size = size;
    out.owned = std::move(image);
    pipeline_.on_result(frame, message_image(out, std::move(frames), server_ms), Clock::now(), timing);
  });
}

void IoThread::handle_error(const wire::Error& e, TimePoint now) {
  std::string what = "renderer error " + std::string(wire::error_name(e.code)) + ": " + e.message;
  if (e.frame) what += " (frame " + std::to_string(*e.frame) + ")";
  if (state_ == State::handshaking && !e.session && !e.frame) {
    pipeline_.count_error();
    if (e.code == wire::ErrorCode::OVERLOADED) {
      // The server is at its session limit: that passes when another session ends, so this is no refusal. Back
      // off and ask again, saying why (docs/protocol.md 5.8).
      pipeline_.connection_error("the renderer at " + opts_.endpoint + " is busy: OVERLOADED (12): " + e.message +
                                 "; asking again in " + std::to_string(backoff_ms_) + " ms");
      fail("renderer overloaded: " + e.message, now, /*quick_retry=*/false);
      return;
    }
    // The answer to HELLO (which has neither): the renderer refused the session.
    refuse(e);
    return;
  }
  if (state_ == State::refused) return;  // the connection is closed; nothing more can come
  if (state_ == State::handshaking) {   // about a frame or session of an earlier connection: not an answer
    pipeline_.count_error();
    log_(LogLevel::debug, "nrb: ignoring an ERROR about an earlier session while waiting for WELCOME: " + what);
    return;
  }
  if (e.session && *e.session != session_) return;  // about an earlier session
  log_(LogLevel::warning, "nrb: " + what);
  if (e.frame) discard_streamed(*e.frame);  // section 6.3.4 step 3: an ERROR naming the frame ends its PARTs
  if (e.code == wire::ErrorCode::NO_SESSION) {
    if (e.frame)
      pipeline_.on_frame_error(*e.frame, e.code);
    else
      pipeline_.count_error();
    fail("the renderer does not know session " + std::to_string(session_), now, /*quick_retry=*/true);
    return;
  }
  if (e.frame)
    pipeline_.on_frame_error(*e.frame, e.code);
  else
    pipeline_.count_error();
}

void IoThread::refuse(const wire::Error& e) {
  const uint64_t number = static_cast<uint64_t>(e.code);  // any uint on the wire
  std::string name(wire::error_name(e.code));
  if (name.empty()) name = e.name.empty() ? std::string("ERROR") : e.name;
  const std::string code = name + " (" + std::to_string(number) + ")";
  std::string text = "the renderer at " + opts_.endpoint + " refused the session: " + code + ": " + e.message;
  log_(LogLevel::error, "nrb: " + text + "; not asking again until the engine retries (nrb_client_retry, or "
                            "nrb_set_enabled off and on)");
  close_session(false);
  state_ = State::refused;
  backoff_ms_ = opts_.backoff_min_ms;  // a retry the engine asks for starts afresh
  handshake_timeouts_ = 0;
  const auto code32 = static_cast<int32_t>(std::min<uint64_t>(number, uint64_t(INT32_MAX)));
  pipeline_.refused(code32, e.message, std::move(text));
}

}  // namespace nrb::detail
