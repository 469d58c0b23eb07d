// A small but real NRB/1 renderer for the client tests: a ZeroMQ ROUTER on its own thread that speaks the protocol
// through the real codec (HELLO -> WELCOME, FRAME -> RESULT echoing the first buffer, PING -> PONG), maps the
// engine's shared memory when offered, and records what it received. Behaviour switches let tests make it slow,
// mute, or answer garbage, and restart() forgets every session like a restarted process would.
#pragma once

#include <zmq.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "protocol.hpp"
#include "shm_pool.hpp"

namespace nrb::test {

class TestRenderer {
 public:
  struct Options {
    bool accept_shm = true;
    std::vector<std::string> accept = {"lz4", "zstd"};  // compressions it accepts when offered
    uint32_t max_in_flight = 4;
    int delay_ms = 0;         // sleep before answering each FRAME
    bool mute = false;        // receive everything, answer nothing
    bool garbage = false;     // answer every message with bytes that are not NRB
    // Buffers the renderer needs: a HELLO that does not offer all of them is refused with ERROR BAD_VALUE and the
    // message `nrb serve` sends ("renderer 'test' needs buffers ['albedo'], which the engine does not offer").
    std::vector<std::string> require;
    std::string curve_secret; // Z85 server secret key: CurveZMQ server
    bool accept_chunked = false;  // lists "chunked" in WELCOME when offered (section 6.3.2)
    // Answers inline with its image compressed by this codec (when negotiated), in chunks of this many bytes when
    // "chunked" was (0: one frame).
    wire::Compression output_compression = wire::Compression::none;
    uint64_t output_chunk_bytes = 0;
    // Lists "shuffle" in WELCOME when offered (section 6.3.3) and then answers with its compressed image in byte
    // planes, chunk by chunk, as `nrb serve` does for an engine that shuffles.
    bool accept_shuffle = false;
    // Lists the HELLO's lossy codec (`lossy_output`, section 6.3.1) in WELCOME and answers with its rgba8 image in
    // it, at the HELLO's quality, as `nrb serve` does for an engine that allows it.
    bool accept_lossy = false;
    // Lists "streamed_output" in WELCOME when offered with "chunked" (section 6.3.4) and then sends its chunked
    // image (output_compression, output_chunk_bytes) as PARTs ahead of a RESULT without a payload, as `nrb serve`
    // does; in reverse index order when `stream_reversed` (any order is allowed).
    bool accept_streamed = false;
    bool stream_reversed = false;
    // Breaks the first `stream_faults` streamed answers this way (step 4-5 of section 6.3.4); later ones are sound.
    enum class StreamFault {
      none,
      missing,      // no PART for chunk 1
      wrong_length, // the table says chunk 0 is one byte longer than its PART
      duplicate,    // chunk 0's PART twice
      too_many,     // 257 PARTs: every index 0..255 (junk beyond the table), then one more
      too_large,    // one more PART of junk, larger than 2 x the output size + 1 MiB
    };
    StreamFault stream_fault = StreamFault::none;
    int stream_faults = 0;
    // Lists "streamed_frames" in WELCOME when offered with "chunked" (section 6.3.5), as `nrb serve` does: holds
    // the PARTs of each frame until its FRAME, then checks them against each streamed buffer's chunk table and
    // puts the buffers together (a mismatch: ERROR PAYLOAD_MISMATCH for the frame).
    bool accept_streamed_frames = false;
  };

  TestRenderer() : TestRenderer(Options()) {}
  explicit TestRenderer(Options o, std::string endpoint = "tcp://127.0.0.1:*") : opts_(std::move(o)) {
    bind(endpoint);
    thread_ = std::thread([this] { run(); });
  }
  ~TestRenderer() {
    stop_ = true;
    thread_.join();
  }

  std::string endpoint() const { return endpoint_; }

  // Forget every session and rebind (same endpoint): what a killed and restarted renderer looks like to the
  // engine. Answers already queued are flushed first, as a clean shutdown would.
  void restart() {
    restart_requested_ = true;
    while (restart_requested_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  void set(const Options& o) {
    std::lock_guard<std::mutex> lock(mutex_);
    opts_ = o;
  }
  Options options() {
    std::lock_guard<std::mutex> lock(mutex_);
    return opts_;
  }

  // Observations.
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  std::vector<std::string> styles() {
    std::lock_guard<std::mutex> lock(mutex_);
    return styles_;
  }
  std::vector<wire::Frame> frames() {  // headers only (buffer data pointers cleared)
    std::lock_guard<std::mutex> lock(mutex_);
    return frames_;
  }
  std::vector<std::vector<uint8_t>> first_buffers() {  // pixels of each FRAME's first buffer, as received
    std::lock_guard<std::mutex> lock(mutex_);
    return pixels_;
  }
  std::vector<wire::Hello> hellos() {
    std::lock_guard<std::mutex> lock(mutex_);
    return hellos_;
  }
  size_t frame_count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return frames_.size();
  }
  size_t byes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return byes_;
  }
  size_t messages() { return messages_.load(); }
  size_t parts_sent() { return parts_sent_.load(); }  // PART messages (section 6.3.4)
  size_t parts_received() { return parts_received_.load(); }  // PART messages from the engine (section 6.3.5)
  // What arrived, in order: a PART ('P') or FRAME ('F') and its frame id (section 6.3.5 step 2's order).
  std::vector<std::pair<char, uint64_t>> arrivals() {
    std::lock_guard<std::mutex> lock(mutex_);
    return arrivals_;
  }
  // An FNV-1a hash of each buffer of each FRAME as the renderer has it (decompressed, put together from PARTs),
  // by frame id and buffer name, and the frames whose streamed buffers failed the checks (with why).
  std::map<uint64_t, std::map<std::string, uint64_t>> buffer_hashes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return hashes_;
  }
  std::vector<std::string> stream_errors() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_errors_;
  }
  static uint64_t fnv1a(const uint8_t* p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  }

 private:
  struct Session {
    std::string routing_id;
    std::unique_ptr<detail::SharedMemory> shm;
    std::optional<wire::ShmPool> pool;
    bool lz4 = false, zstd = false, chunked = false, shuffle = false, streamed = false;
    bool streamed_frames = false;
    // Section 6.3.5: PARTs held until their FRAME, by frame id; the last frame id accepted.
    struct HeldPart {
      std::string buffer;
      uint64_t index = 0;
      std::vector<uint8_t> bytes;
    };
    std::map<uint64_t, std::vector<HeldPart>> held;
    uint64_t last_frame = 0;
    wire::Compression lossy = wire::Compression::none;  // the image codec accepted (section 6.3.1), or none
    int lossy_quality = 0;
  };

  void bind(const std::string& endpoint) {
    sock_ = zmq::socket_t(ctx_, zmq::socket_type::router);
    sock_.set(zmq::sockopt::linger, 100);
    if (!opts_.curve_secret.empty()) {
      sock_.set(zmq::sockopt::curve_server, 1);
      if (zmq_setsockopt(sock_.handle(), ZMQ_CURVE_SECRETKEY, opts_.curve_secret.c_str(), 41) != 0)
        throw zmq::error_t();
    }
    for (int attempt = 0;; ++attempt) {  // the previous listener of a restart closes asynchronously
      try {
        sock_.bind(endpoint);
        break;
      } catch (const zmq::error_t& e) {
        if (e.num() != EADDRINUSE || attempt > 200) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
  }

  void send(const std::string& rid, const wire::Message& m) {
    wire::Encoded enc;
    wire::encode(m, enc);
    sock_.send(zmq::buffer(rid), zmq::send_flags::sndmore);
    for (size_t i = 0; i < enc.frame_count(); ++i) {
      wire::Bytes b = enc.frame(i);
      sock_.send(zmq::const_buffer(b.data, b.size),
                 i + 1 < enc.frame_count() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  void run() {
    uint64_t generation = 1;
    while (!stop_) {
      if (restart_requested_) {
        sessions_.clear();
        sock_.close();
        bind(endpoint_);
        ++generation;
        restart_requested_ = false;
      }
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(5));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> parts;
      for (;;) {
        zmq::message_t m;
        if (!sock_.recv(m, zmq::recv_flags::dontwait)) break;
        bool more = m.more();
        parts.push_back(std::move(m));
        if (!more) {
          handle(parts, generation);
          parts.clear();
        }
      }
    }
  }

  void handle(std::vector<zmq::message_t>& parts, uint64_t generation) {
    ++messages_;
    Options o = options();
    std::string rid(static_cast<const char*>(parts[0].data()), parts[0].size());
    if (o.mute) return;
    if (o.garbage) {
      static const char junk[] = "\xc1\xff not msgpack";
      sock_.send(zmq::buffer(rid), zmq::send_flags::sndmore);
      sock_.send(zmq::buffer(junk, sizeof junk - 1), zmq::send_flags::none);
      return;
    }
    std::vector<wire::Bytes> views;
    for (size_t i = 1; i < parts.size(); ++i) views.emplace_back(parts[i].data(), parts[i].size());
    // Decode with the options of this peer's session (its shared-memory pool).
    wire::DecodeOptions dopts = wire::DecodeOptions::permissive();
    Session* sess = nullptr;
    for (auto& [id, s] : sessions_)
      if (s.routing_id == rid) sess = &s;
    dopts.shm_pool = sess && sess->pool ? &*sess->pool : nullptr;
    wire::DecodeResult r = wire::decode(views, dopts);
    if (!r.ok()) {
      send(rid, wire::make_error(r.error.code, r.error.message));
      return;
    }
    wire::Message& m = *r.message;
    switch (wire::message_type(m)) {
      case wire::MessageType::hello: on_hello(rid, std::get<wire::Hello>(m), generation, o); break;
      case wire::MessageType::frame: on_frame(rid, std::get<wire::Frame>(m), sess, o); break;
      case wire::MessageType::part: on_part(rid, std::get<wire::Part>(m), sess); break;
      case wire::MessageType::ping: {
        auto& p = std::get<wire::Ping>(m);
        wire::Pong pong;
        pong.nonce = p.nonce;
        pong.time_ns = p.time_ns;
        send(rid, pong);
        break;
      }
      case wire::MessageType::bye: {
        std::lock_guard<std::mutex> lock(mutex_);
        ++byes_;
        auto& b = std::get<wire::Bye>(m);
        if (b.session) sessions_.erase(*b.session);
        break;
      }
      default: break;
    }
  }

  void on_hello(const std::string& rid, const wire::Hello& h, uint64_t generation, const Options& o) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      hellos_.push_back(h);
    }
    std::string missing;
    for (const std::string& need : o.require) {
      bool offered = std::any_of(h.buffers.begin(), h.buffers.end(),
                                 [&](const wire::BufferSpec& b) { return b.name == need; });
      if (!offered) missing += (missing.empty() ? "'" : ", '") + need + "'";
    }
    if (!missing.empty()) {
      send(rid, wire::make_error(wire::ErrorCode::BAD_VALUE, "buffers: renderer 'test' needs buffers [" + missing +
                                                                 "], which the engine does not offer"));
      return;
    }
    uint64_t id = generation * 1000 + (++session_counter_);
    Session s;
    s.routing_id = rid;
    wire::Welcome w;
    w.session = id;
    w.renderer = "test-renderer/1";
    auto offered = [&](const char* c) {
      return std::find(h.capabilities.begin(), h.capabilities.end(), c) != h.capabilities.end();
    };
    for (const char* c : {"lz4", "zstd"}) {
      if (offered(c) && std::find(o.accept.begin(), o.accept.end(), c) != o.accept.end()) {
        w.capabilities.emplace_back(c);
        (std::string(c) == "lz4" ? s.lz4 : s.zstd) = true;
      }
    }
    if (o.accept_chunked && offered("chunked")) {
      w.capabilities.emplace_back("chunked");
      s.chunked = true;
    }
    if (o.accept_shuffle && offered("shuffle")) {
      w.capabilities.emplace_back("shuffle");
      s.shuffle = true;
    }
    if (o.accept_streamed && s.chunked && offered("streamed_output")) {
      w.capabilities.emplace_back("streamed_output");
      s.streamed = true;
    }
    if (o.accept_streamed_frames && s.chunked && offered("streamed_frames")) {
      w.capabilities.emplace_back("streamed_frames");
      s.streamed_frames = true;
    }
    if (o.accept_lossy && h.lossy_output) {
      w.capabilities.push_back(h.lossy_output->codec);
      s.lossy = h.lossy_output->codec == "webp" ? wire::Compression::webp : wire::Compression::jpeg;
      s.lossy_quality = int(h.lossy_output->quality);
    }
    if (o.accept_shm && offered("shm") && h.shm) {
      try {
        s.shm = std::make_unique<detail::SharedMemory>(detail::SharedMemory::open(h.shm->name));
        s.pool = *h.shm;
        w.capabilities.emplace_back("shm");
      } catch (const std::exception&) {
      }
    }
    // RESULTs echo the first buffer: announce exactly that (libnrb drops a RESULT that differs from WELCOME).
    w.output.format = h.buffers.empty() ? wire::Format::rgba8 : h.buffers[0].format;
    w.output.width = h.render_size.width;
    w.output.height = h.render_size.height;
    w.max_in_flight = o.max_in_flight;
    w.styles = {"identity", "noir"};
    sessions_[id] = std::move(s);
    send(rid, w);
  }

  void on_frame(const std::string& rid, wire::Frame& f, Session* sess, const Options& o) {
    if (sess && sessions_.count(f.session) && &sessions_[f.session] != sess) sess = nullptr;
    if (!sess || !sessions_.count(f.session)) {
      wire::Error e = wire::make_error(wire::ErrorCode::NO_SESSION, "unknown session");
      e.session = f.session;
      e.frame = f.frame;
      send(rid, e);
      return;
    }
    auto started = std::chrono::steady_clock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      arrivals_.emplace_back('F', f.frame);
    }
    std::vector<std::vector<uint8_t>> assembled;  // the streamed buffers' bytes, which f's descriptors then view
    const std::string why = assemble(*sess, f, assembled);
    sess->last_frame = std::max(sess->last_frame, f.frame);
    if (!why.empty()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stream_errors_.push_back(why);
      }
      wire::Error e = wire::make_error(wire::ErrorCode::PAYLOAD_MISMATCH, why);
      e.session = f.session;
      e.frame = f.frame;
      send(rid, e);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& b : f.buffers)
        if (!b.shm && b.data) hashes_[f.frame][b.name] = fnv1a(b.data, b.byte_size());
    }
    if (o.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.delay_ms));
    // The first buffer's bytes, wherever they are.
    std::vector<uint8_t> first;
    const wire::BufferDesc* src = f.buffers.empty() ? nullptr : &f.buffers[0];
    if (src) {
      const uint8_t* p = src->data;
      if (src->shm) p = sess->shm->data() + src->shm->slot * sess->pool->slot_size + src->shm->offset;
      first.assign(p, p + src->byte_size());
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& e : f.events) events_.push_back(e.name);
      for (auto& s : f.styles) styles_.push_back(s.style);
      wire::Frame copy = f;
      for (auto& b : copy.buffers) b.data = b.payload = nullptr, b.owned.reset();
      frames_.push_back(std::move(copy));
      pixels_.push_back(first);
    }
    wire::Result res;
    res.session = f.session;
    res.frame = f.frame;
    res.status = wire::ResultStatus::ok;
    wire::BufferDesc out;
    out.name = "output";
    out.format = src ? src->format : wire::Format::rgba8;
    out.width = src ? src->width : 1;
    out.height = src ? src->height : 1;
    out.stride = src ? uint64_t(src->width) * wire::bytes_per_pixel(src->format) : 4;
    std::vector<uint8_t> packed(out.stride * out.height);
    if (src)
      for (uint32_t y = 0; y < out.height; ++y)
        std::memcpy(packed.data() + y * out.stride, first.data() + y * src->stride, out.stride);
    if (f.result_slot && sess->shm) {
      uint8_t* dst = sess->shm->data() + *f.result_slot * sess->pool->slot_size;
      std::memcpy(dst, packed.data(), packed.size());
      out.shm = wire::ShmRef{*f.result_slot, 0};
    } else {
      out.set_pixels(packed.data(), packed.size());
    }
    std::vector<uint8_t> squeezed;  // the image compressed, chunk after chunk, or encoded in the lossy codec
    const wire::Compression oc = o.output_compression;
    if (!out.shm && sess->lossy != wire::Compression::none && out.format == wire::Format::rgba8) {
      squeezed = sess->lossy == wire::Compression::webp
                     ? wire::encode_webp(packed.data(), out.width, out.height, out.stride, sess->lossy_quality)
                     : wire::encode_jpeg(packed.data(), out.width, out.height, out.stride, sess->lossy_quality);
      out.compression = sess->lossy;
      out.payload = squeezed.data();
      out.payload_size = squeezed.size();
    } else if (!out.shm && ((oc == wire::Compression::lz4 && sess->lz4) || (oc == wire::Compression::zstd && sess->zstd))) {
      const uint64_t step = sess->chunked && o.output_chunk_bytes ? o.output_chunk_bytes : packed.size();
      const unsigned texel = wire::bytes_per_pixel(out.format);
      out.shuffle = sess->shuffle && texel > 1;
      for (uint64_t at = 0; at < packed.size(); at += step) {
        auto c = wire::compress(oc, packed.data() + at, std::min<uint64_t>(step, packed.size() - at), 0,
                                out.shuffle ? texel : 0);
        squeezed.insert(squeezed.end(), c.begin(), c.end());
        if (step < packed.size()) out.chunks.push_back(c.size());
      }
      if (!out.chunks.empty()) out.chunk_bytes = step;
      out.compression = oc;
      out.payload = squeezed.data();
      out.payload_size = squeezed.size();
      if (sess->streamed && !out.chunks.empty()) {
        stream(rid, f, out, o);
        out.streamed = true;  // section 6.3.4: no payload frame, the PARTs carried it
      }
    }
    res.output = out;
    // Its honest render time (received -> answered); it keeps no queue of its own, so queue_ms stays 0.
    res.timing.render_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    res.timing.total_ms = res.timing.render_ms + 0.01;
    send(rid, res);
  }

  // Sends `out`'s chunks (views of its payload) as PARTs, in order or reversed, broken as the options say; a fault
  // that changes the table changes `out`'s.
  void stream(const std::string& rid, const wire::Frame& f, wire::BufferDesc& out, const Options& o) {
    using Fault = Options::StreamFault;
    const Fault fault = stream_faulted_ < o.stream_faults ? o.stream_fault : Fault::none;
    if (fault != Fault::none) ++stream_faulted_;
    std::vector<std::pair<uint64_t, wire::Bytes>> parts;  // index, payload
    uint64_t at = 0;
    for (size_t i = 0; i < out.chunks.size(); ++i) {
      parts.emplace_back(i, wire::Bytes(out.payload + at, out.chunks[i]));
      at += out.chunks[i];
    }
    if (o.stream_reversed) std::reverse(parts.begin(), parts.end());
    static const std::vector<uint8_t> junk((2u << 20) + 64 * 1024, 0x5a);
    switch (fault) {
      case Fault::none: break;
      case Fault::missing:
        parts.erase(std::remove_if(parts.begin(), parts.end(), [](const auto& p) { return p.first == 1; }),
                    parts.end());
        break;
      case Fault::wrong_length: out.chunks[0] += 1; break;
      case Fault::duplicate: parts.push_back(parts.front()); break;
      case Fault::too_many:
        for (uint64_t i = out.chunks.size(); i < 256; ++i) parts.emplace_back(i, wire::Bytes(junk.data(), 16));
        parts.emplace_back(255, wire::Bytes(junk.data(), 16));
        break;
      case Fault::too_large: parts.emplace_back(out.chunks.size(), wire::Bytes(junk.data(), junk.size())); break;
    }
    for (const auto& [index, bytes] : parts) {
      wire::Part p;
      p.session = f.session;
      p.frame = f.frame;
      p.index = index;
      p.payload = bytes.data;
      p.payload_size = bytes.size;
      send(rid, p);
      ++parts_sent_;
    }
  }

  // Section 6.3.5 step 3: a PART is held for its FRAME, or answered with an ERROR naming the session only.
  void on_part(const std::string& rid, const wire::Part& p, Session* sess) {
    ++parts_received_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      arrivals_.emplace_back('P', p.frame);
    }
    auto refuse = [&](wire::ErrorCode code, const std::string& why) {
      wire::Error e = wire::make_error(code, why);
      e.session = p.session;
      send(rid, e);
    };
    if (!sess || !sessions_.count(p.session) || &sessions_[p.session] != sess)
      return refuse(wire::ErrorCode::NO_SESSION, "unknown session");
    if (p.buffer == "output" || !sess->streamed_frames)
      return refuse(wire::ErrorCode::BAD_VALUE, "a PART of \"" + p.buffer + "\" was not negotiated");
    if (p.frame <= sess->last_frame) return refuse(wire::ErrorCode::BAD_VALUE, "a PART of an old frame");
    sess->held[p.frame].push_back(Session::HeldPart{p.buffer, p.index, {p.payload, p.payload + p.payload_size}});
  }

  // Section 6.3.5 step 4: the PARTs held for `f` against its streamed buffers' tables, then each chunk
  // decompressed into `storage`, which the descriptors then view. Returns why not ("" when sound).
  std::string assemble(Session& sess, wire::Frame& f, std::vector<std::vector<uint8_t>>& storage) {
    std::vector<Session::HeldPart> parts;
    if (auto it = sess.held.find(f.frame); it != sess.held.end()) parts = std::move(it->second);
    sess.held.erase(sess.held.begin(), sess.held.upper_bound(f.frame));  // and those of older frames
    for (const auto& p : parts) {
      bool streamed = false;
      for (const auto& b : f.buffers) streamed = streamed || (b.streamed && b.name == p.buffer);
      if (!streamed) return p.buffer + ": a PART arrived for a buffer the FRAME does not stream";
    }
    storage.reserve(f.buffers.size());
    for (auto& b : f.buffers) {
      if (!b.streamed) continue;
      const size_t n = b.chunks.size();
      std::vector<const Session::HeldPart*> by_index(n, nullptr);
      for (const auto& p : parts) {
        if (p.buffer != b.name) continue;
        if (p.index >= n) return b.name + ": a PART arrived for chunks[" + std::to_string(p.index) + "]";
        if (by_index[p.index]) return b.name + ": chunks[" + std::to_string(p.index) + "]: two PARTs arrived";
        by_index[p.index] = &p;
      }
      const uint64_t size = b.byte_size();
      std::vector<uint8_t>& out = storage.emplace_back(size);
      for (size_t i = 0; i < n; ++i) {
        const std::string at = b.name + ": chunks[" + std::to_string(i) + "]: ";
        if (!by_index[i]) return at + "no PART arrived";
        if (by_index[i]->bytes.size() != b.chunks[i])
          return at + "the PART holds " + std::to_string(by_index[i]->bytes.size()) + " bytes, the table says " +
                 std::to_string(b.chunks[i]);
        const uint64_t raw_at = i * b.chunk_bytes;
        const std::string why = wire::inflate_chunk(b.compression, by_index[i]->bytes.data(), by_index[i]->bytes.size(),
                                                    out.data() + raw_at, std::min(b.chunk_bytes, size - raw_at),
                                                    b.shuffle ? wire::bytes_per_pixel(b.format) : 0);
        if (!why.empty()) return at + why;
      }
      b.data = out.data();
      b.size = out.size();
    }
    return {};
  }

  Options opts_;
  int stream_faulted_ = 0;  // renderer thread only
  std::mutex mutex_;
  zmq::context_t ctx_{1};
  zmq::socket_t sock_;
  std::string endpoint_;
  std::map<uint64_t, Session> sessions_;
  uint64_t session_counter_ = 0;
  std::vector<std::string> events_, styles_;
  std::vector<wire::Frame> frames_;
  std::vector<std::vector<uint8_t>> pixels_;
  std::vector<wire::Hello> hellos_;
  size_t byes_ = 0;
  std::atomic<size_t> messages_{0}, parts_sent_{0}, parts_received_{0};
  std::vector<std::pair<char, uint64_t>> arrivals_;
  std::map<uint64_t, std::map<std::string, uint64_t>> hashes_;
  std::vector<std::string> stream_errors_;
  std::atomic<bool> stop_{false}, restart_requested_{false};
  std::thread thread_;
};

}  // namespace nrb::test
