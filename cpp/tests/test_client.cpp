// The client end to end through its public API (nrb.hpp over the C ABI) against a real ZeroMQ ROUTER renderer
// running in-process (tests/test_renderer.hpp) over tcp loopback and ipc.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nrb/nrb.hpp"
#include "test_renderer.hpp"

#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

using namespace std::chrono_literals;
using nrb::test::TestRenderer;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t W = 64, H = 32;

// An engine sending one large hudless_color (w x h rgba8) inline with lz4, as the chunked-compression tests do.
nrb::client_config lz4_color_config(const std::string& endpoint, uint32_t w, uint32_t h) {
  nrb::client_config c;
  c.endpoint(endpoint).engine("doctest").buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8);
  c->transport = NRB_TRANSPORT_INLINE;
  c->render_width = w;
  c->render_height = h;
  c->compression = NRB_COMPRESSION_LZ4;
  return c;
}

nrb::client_config config(const std::string& endpoint, nrb_transport transport = NRB_TRANSPORT_INLINE) {
  nrb::client_config c;
  c.endpoint(endpoint).engine("doctest").buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8)
      .buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F);
  c->transport = transport;
  c->render_width = W;
  c->render_height = H;
  c->deadline_ms = 500;
  c->server_timeout_ms = 400;
  c->ping_interval_ms = 100;
  c->handshake_timeout_ms = 300;
  c->connect_timeout_ms = 300;
  c->reconnect_backoff_min_ms = 10;
  c->reconnect_backoff_max_ms = 100;
  return c;
}

std::vector<uint8_t> color_for(uint64_t frame) {
  std::vector<uint8_t> px(W * H * 4);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(frame * 7 + i % 251);
  return px;
}

// One engine frame: color (tagged or written into an acquired slot) + depth, optionally an event; returns its id.
uint64_t engine_frame(nrb::client& c, bool use_slot = false, const char* event = nullptr) {
  uint64_t id = c.begin();
  auto px = color_for(id);
  if (use_slot) {
    nrb::slot s = c.acquire_slot("hudless_color", NRB_FORMAT_RGBA8, W, H);
    REQUIRE(s.data != nullptr);
    REQUIRE(s.stride >= W * 4);
    for (uint32_t y = 0; y < H; ++y) std::memcpy(static_cast<uint8_t*>(s.data) + y * s.stride, &px[y * W * 4], W * 4);
  } else {
    c.tag_buffer("hudless_color", NRB_FORMAT_RGBA8, W, H, px.data());
  }
  std::vector<float> depth(W * H, 0.5f);
  c.tag_buffer("depth", NRB_FORMAT_R32F, W, H, depth.data());
  if (event) c.fire_event(event);
  c.submit();
  return id;
}

template <class Pred>
bool wait_for(Pred pred, std::chrono::milliseconds limit = 3000ms) {
  auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

// Runs frames until `n` distinct results with correct pixels were shown (or a time limit); returns how many were.
// Distinct: with one frame in flight (libnrb's adaptive default) the newest result is shown again on the next ticks
// until a newer one arrives, and counting those would pass with fewer results than asked for.
int render_until(nrb::client& c, int n, bool use_slot = false, std::chrono::milliseconds limit = 5000ms) {
  int good = 0;
  uint64_t last_frame = 0;
  auto until = Clock::now() + limit;
  while (good < n && Clock::now() < until) {
    engine_frame(c, use_slot);
    std::this_thread::sleep_for(3ms);
    if (nrb::result r = c.acquire_result()) {
      REQUIRE(r.width() == W);
      REQUIRE(r.height() == H);
      REQUIRE(r.format() == NRB_FORMAT_RGBA8);
      auto want = color_for(r.frame_id());
      const auto* got = static_cast<const uint8_t*>(r.pixels());
      bool same = true;
      for (uint32_t y = 0; y < H; ++y) same = same && std::memcmp(got + y * r.stride(), &want[y * W * 4], W * 4) == 0;
      CHECK(same);
      if (r.frame_id() != last_frame) ++good;
      last_frame = r.frame_id();
    }
  }
  return good;
}

bool connected(const nrb::client& c) { return c.stats().state == NRB_STATE_CONNECTED; }

// What a client configured with ``attach`` logs at INFO and above (its callback runs on libnrb's I/O thread).
struct LogLines {
  std::mutex m;
  std::vector<std::string> lines;

  void attach(nrb::client_config& cfg) {
    cfg->log_level = NRB_LOG_INFO;
    cfg.log([this](nrb_log_level, const char* msg) {
      std::lock_guard<std::mutex> lock(m);
      lines.emplace_back(msg);
    });
  }
  bool has(const std::string& text) {
    std::lock_guard<std::mutex> lock(m);
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(text) != std::string::npos; });
  }
};

std::string ipc_endpoint(const char* tag) {
  return "ipc:///tmp/nrb-test-" + std::string(tag) + "-" + std::to_string(::getpid());
}

}  // namespace

TEST_CASE("client: frames go out inline over tcp and the renderer's image comes back") {
  TestRenderer r;
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(render_until(c, 5) == 5);
  auto s = c.stats();
  CHECK(s.shm_active == 0);
  CHECK(s.frames_sent >= 5);
  CHECK(s.results_received >= 5);
  CHECK(s.rtt_p50_ms > 0.0);
  CHECK(s.bytes_sent > 5 * W * H * 8);
  auto hellos = r.hellos();
  REQUIRE(hellos.size() == 1);
  CHECK(hellos[0].engine == "doctest");
  CHECK(hellos[0].buffers.size() == 2);
  CHECK_FALSE(hellos[0].shm.has_value());
}

TEST_CASE("client: ipc endpoints work the same way") {
  TestRenderer r(TestRenderer::Options(), ipc_endpoint("ipc"));
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(render_until(c, 3) == 3);
}

#ifndef _WIN32
TEST_CASE("client: shared memory carries the pixels both ways and the pool's name is gone after WELCOME") {
  TestRenderer r;
  nrb::client c(config(r.endpoint(), NRB_TRANSPORT_SHM));
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(c.stats().shm_active == 1);
  CHECK(render_until(c, 4, /*use_slot=*/true) == 4);
  CHECK(render_until(c, 2, /*use_slot=*/false) == 2);  // tag_buffer copies into the slot
  auto frames = r.frames();
  REQUIRE_FALSE(frames.empty());
  for (const auto& b : frames.back().buffers) CHECK(b.shm.has_value());
  CHECK(frames.back().result_slot.has_value());
  auto hellos = r.hellos();
  REQUIRE(hellos.size() == 1);
  REQUIRE(hellos[0].shm.has_value());
  int fd = ::shm_open(hellos[0].shm->name.c_str(), O_RDONLY, 0);
  CHECK(fd < 0);  // unlinked: reclaimed by the kernel once both sides unmap or die
  if (fd >= 0) ::close(fd);
}

TEST_CASE("client: a renderer that declines shared memory gets inline frames") {
  TestRenderer::Options o;
  o.accept_shm = false;
  TestRenderer r(o);
  nrb::client c(config(r.endpoint(), NRB_TRANSPORT_SHM));
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(c.stats().shm_active == 0);
  CHECK(render_until(c, 3, /*use_slot=*/true) == 3);
  auto frames = r.frames();
  REQUIRE_FALSE(frames.empty());
  for (const auto& b : frames.back().buffers) CHECK_FALSE(b.shm.has_value());
}
#endif

TEST_CASE("client: negotiated compression shrinks inline buffers and they arrive intact") {
  for (nrb_compression comp : {NRB_COMPRESSION_LZ4, NRB_COMPRESSION_ZSTD}) {
    TestRenderer r;
    auto cfg = config(r.endpoint());
    cfg->compression = comp;
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
    CHECK(c.stats().compression_active == comp);
    CHECK(render_until(c, 3) == 3);
    auto frames = r.frames();
    REQUIRE_FALSE(frames.empty());
    // The depth buffer (constant) compresses; what the renderer decoded equals what was tagged.
    bool compressed = false;
    for (const auto& b : frames.back().buffers) compressed = compressed || b.compression != nrb::wire::Compression::none;
    CHECK(compressed);
    auto pixels = r.first_buffers().back();
    CHECK(pixels == color_for(frames.back().frame));
  }
}

TEST_CASE("client: with chunked compression a 1 MiB buffer goes out in chunks and the chunked image comes back exact") {
  // Section 6.3.2: libnrb offers "chunked" with a codec; a renderer that accepts gets the large buffer split over
  // libnrb's pool, and may answer in chunks too, which libnrb decompresses off its I/O thread; section 6.3.3: a
  // renderer that also accepts "shuffle" answers with each chunk in byte planes, which libnrb puts back together.
  constexpr uint32_t BW = 512, BH = 512;  // rgba8: 1 MiB, above the 512 KiB from which buffers are split
  for (auto [renderer_takes_chunks, renderer_shuffles] : {std::pair{true, false}, std::pair{false, false},
                                                          std::pair{true, true}, std::pair{false, true}}) {
    CAPTURE(renderer_takes_chunks);
    CAPTURE(renderer_shuffles);
    TestRenderer::Options o;
    o.accept_chunked = renderer_takes_chunks;
    o.accept_shuffle = renderer_shuffles;
    o.output_compression = nrb::wire::Compression::lz4;
    o.output_chunk_bytes = 300000;  // 4 chunks, the last shorter
    TestRenderer r(o);
    nrb::client_config cfg = lz4_color_config(r.endpoint(), BW, BH);
    cfg->deadline_ms = 2000;
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
    REQUIRE(r.hellos().size() == 1);
    const std::vector<std::string> caps = r.hellos()[0].capabilities;
    CHECK(std::find(caps.begin(), caps.end(), "chunked") != caps.end());
    std::vector<uint8_t> px(size_t(BW) * BH * 4);
    bool shown = false;
    for (int tries = 0; tries < 200 && !shown; ++tries) {
      const uint64_t id = c.begin();
      for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / 4096 + i % 7 + id) & 0xff);
      c.tag_buffer("hudless_color", NRB_FORMAT_RGBA8, BW, BH, px.data());
      c.submit();
      std::this_thread::sleep_for(10ms);
      if (nrb::result res = c.acquire_result()) {
        REQUIRE(res.width() == BW);
        std::vector<uint8_t> want(size_t(BW) * BH * 4);
        for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<uint8_t>((i / 4096 + i % 7 + res.frame_id()) & 0xff);
        const auto* got = static_cast<const uint8_t*>(res.pixels());
        CHECK(std::memcmp(got, want.data(), want.size()) == 0);
        shown = true;
      }
    }
    CHECK(shown);
    auto frames = r.frames();
    REQUIRE_FALSE(frames.empty());
    // the first frame is always compressed (to measure what it costs; later ones only when that pays: loopback
    // is fast enough that they may go raw)
    const auto& b = frames.front().buffers.at(0);
    CHECK(b.compression == nrb::wire::Compression::lz4);
    CHECK(b.shuffle == renderer_shuffles);  // negotiated: libnrb shuffles what it compresses, and so did the image
    if (renderer_takes_chunks) {
      CHECK(b.chunks.size() >= 2);  // split over the pool (2..4 threads)
      CHECK(b.chunk_bytes % 65536 == 0);
    } else {
      CHECK(b.chunks.empty());  // an older renderer: one frame, as before
    }
  }
}

// Section 6.3.4: a renderer that streams answers with its W x H rgba8 image (8192 bytes) in 3 lz4 chunks of 3000
// raw bytes, each a PART ahead of the RESULT.
TestRenderer::Options streaming_renderer() {
  TestRenderer::Options o;
  o.accept_chunked = true;
  o.accept_streamed = true;
  o.output_compression = nrb::wire::Compression::lz4;
  o.output_chunk_bytes = 3000;
  return o;
}

TEST_CASE("client: a streamed image (PARTs ahead of its RESULT) is shown exact, in any order, shuffled or not") {
  for (auto [reversed, shuffled] : {std::pair{false, false}, std::pair{true, false}, std::pair{false, true},
                                    std::pair{true, true}}) {
    CAPTURE(reversed);
    CAPTURE(shuffled);
    TestRenderer::Options o = streaming_renderer();
    o.stream_reversed = reversed;
    o.accept_shuffle = shuffled;
    TestRenderer r(o);
    auto cfg = config(r.endpoint());
    cfg->compression = NRB_COMPRESSION_LZ4;
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
    const std::vector<std::string> caps = r.hellos().at(0).capabilities;
    CHECK(std::find(caps.begin(), caps.end(), "streamed_output") != caps.end());  // listed with "chunked"
    CHECK(render_until(c, 4) == 4);  // compares every pixel
    CHECK(r.parts_sent() >= 12);
    CHECK(c.stats().errors_received == 0);
  }
}

TEST_CASE("client: without compression libnrb does not offer streamed_output, and gets inline images") {
  TestRenderer r(streaming_renderer());
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  const std::vector<std::string> caps = r.hellos().at(0).capabilities;
  CHECK(std::find(caps.begin(), caps.end(), "streamed_output") == caps.end());
  CHECK(render_until(c, 2) == 2);
  CHECK(r.parts_sent() == 0);
}

TEST_CASE("client: a streamed image with a PART missing, too long, repeated or over the limits is not shown") {
  using Fault = TestRenderer::Options::StreamFault;
  const std::pair<Fault, const char*> cases[] = {
      {Fault::missing, "PAYLOAD_MISMATCH: output: chunks[1]: no PART arrived"},
      {Fault::wrong_length, "PAYLOAD_MISMATCH: output: chunks[0]: the PART holds "},
      {Fault::duplicate, "PAYLOAD_MISMATCH: output: chunks[0]: two PARTs arrived"},
      {Fault::too_many, "PAYLOAD_MISMATCH: output: more than 256 PARTs arrived"},
      {Fault::too_large, "bytes (2 x the output size + 1 MiB)"},
  };
  for (const auto& [fault, text] : cases) {
    CAPTURE(text);
    TestRenderer::Options o = streaming_renderer();
    o.stream_fault = fault;
    o.stream_faults = 1;  // the first answer only
    TestRenderer r(o);
    LogLines log;
    auto cfg = config(r.endpoint());
    cfg->compression = NRB_COMPRESSION_LZ4;
    log.attach(cfg);
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
    std::vector<uint64_t> shown;
    const auto until = Clock::now() + 5000ms;
    while (shown.size() < 3 && Clock::now() < until) {
      engine_frame(c);
      std::this_thread::sleep_for(3ms);
      if (nrb::result res = c.acquire_result()) {
        const auto want = color_for(res.frame_id());
        CHECK(std::memcmp(res.pixels(), want.data(), want.size()) == 0);
        if (shown.empty() || shown.back() != res.frame_id()) shown.push_back(res.frame_id());
      }
    }
    CHECK(shown.size() == 3);  // the session goes on
    REQUIRE_FALSE(r.frames().empty());
    const uint64_t broken = r.frames().front().frame;  // the first frame answered: its image was broken
    CHECK(std::find(shown.begin(), shown.end(), broken) == shown.end());
    CHECK(c.stats().errors_received >= 1);
    CHECK(connected(c));
    CHECK_MESSAGE(log.has(text), "no log line has: " << text);
  }
}

namespace {

// Section 6.3.5: an engine sending three buffers of SW x SH inline with lz4: hudless_color rgba8 (3 MiB: 3 stream
// chunks of 1 MiB), depth r32f (3 MiB) and roughness r16f (1.5 MiB: 2 chunks, the last half full).
constexpr uint32_t SW = 1024, SH = 768;
struct StreamedBuffer {
  const char* name;
  nrb_format format;
  unsigned bpp;
  size_t chunks;
};
constexpr StreamedBuffer kStreamedBuffers[] = {{NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8, 4, 3},
                                               {NRB_BUFFER_DEPTH, NRB_FORMAT_R32F, 4, 3},
                                               {NRB_BUFFER_ROUGHNESS, NRB_FORMAT_R16F, 2, 2}};

nrb::client_config streaming_engine(const std::string& endpoint) {
  nrb::client_config c;
  c.endpoint(endpoint).engine("doctest");
  for (const auto& b : kStreamedBuffers) c.buffer(b.name, b.format);
  c->transport = NRB_TRANSPORT_INLINE;
  c->render_width = SW;
  c->render_height = SH;
  c->compression = NRB_COMPRESSION_LZ4;
  c->deadline_ms = 2000;
  return c;
}

// Buffer `k`'s bytes in frame `id`: compressible, and different in every frame and buffer.
std::vector<uint8_t> streamed_pixels(uint64_t id, size_t k) {
  std::vector<uint8_t> px(size_t(SW) * SH * kStreamedBuffers[k].bpp);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / 4096 + i % (5 + k) + id * 3 + k) & 0xff);
  return px;
}

// Runs frames of streamed_pixels() until the renderer has taken `n` (or a time limit); every image shown must echo
// its frame's hudless_color.
void stream_frames(nrb::client& c, TestRenderer& r, size_t n) {
  const auto until = Clock::now() + 10000ms;
  while (r.frame_count() < n && Clock::now() < until) {
    const uint64_t id = c.begin();
    std::vector<std::vector<uint8_t>> px;
    for (size_t k = 0; k < std::size(kStreamedBuffers); ++k) {
      px.push_back(streamed_pixels(id, k));
      c.tag_buffer(kStreamedBuffers[k].name, kStreamedBuffers[k].format, SW, SH, px.back().data());
    }
    c.submit();
    std::this_thread::sleep_for(15ms);
    if (nrb::result res = c.acquire_result()) {
      REQUIRE(res.width() == SW);
      const auto want = streamed_pixels(res.frame_id(), 0);
      CHECK(std::memcmp(res.pixels(), want.data(), want.size()) == 0);
    }
  }
}

// Every FRAME the renderer took holds exactly the bytes tagged for it.
void check_buffers_exact(TestRenderer& r) {
  const auto frames = r.frames();
  const auto hashes = r.buffer_hashes();  // recorded before the frame is: every frame above has them
  for (const auto& f : frames) CHECK(hashes.count(f.frame) == 1);
  for (const auto& [frame, buffers] : hashes) {
    CAPTURE(frame);
    REQUIRE(buffers.size() == std::size(kStreamedBuffers));
    for (size_t k = 0; k < std::size(kStreamedBuffers); ++k) {
      CAPTURE(kStreamedBuffers[k].name);
      const auto want = streamed_pixels(frame, k);
      CHECK(buffers.at(kStreamedBuffers[k].name) == TestRenderer::fnv1a(want.data(), want.size()));
    }
  }
}

}  // namespace

TEST_CASE("client: with streamed_frames compressed buffers leave in PARTs ahead of their FRAME and arrive exact") {
  for (bool shuffled : {false, true}) {
    CAPTURE(shuffled);
    TestRenderer::Options o;
    o.accept_chunked = true;
    o.accept_shuffle = shuffled;
    o.accept_streamed_frames = true;
    TestRenderer r(o);
    nrb::client c(streaming_engine(r.endpoint()));
    REQUIRE(wait_for([&] { return connected(c); }));
    const std::vector<std::string> caps = r.hellos().at(0).capabilities;
    CHECK(std::find(caps.begin(), caps.end(), "streamed_frames") != caps.end());  // listed with "chunked"
    stream_frames(c, r, 4);
    REQUIRE(r.frame_count() >= 4);
    CHECK(r.stream_errors().empty());
    CHECK(c.stats().errors_received == 0);
    check_buffers_exact(r);

    // The first frame is always compressed (to measure it), so streamed: each buffer in 1 MiB chunks, no payload.
    const auto frames = r.frames();
    std::map<uint64_t, bool> streamed;  // frame id -> its buffers came in PARTs
    for (const auto& f : frames) {
      REQUIRE(f.buffers.size() == std::size(kStreamedBuffers));
      streamed[f.frame] = f.buffers[0].streamed;
      for (size_t k = 0; k < f.buffers.size(); ++k) {
        const auto& b = f.buffers[k];
        CAPTURE(b.name);
        CHECK(b.streamed == streamed[f.frame]);  // all of a frame's buffers, or none (sent raw)
        if (!b.streamed) {
          CHECK(b.compression == nrb::wire::Compression::none);
          continue;
        }
        CHECK(b.compression == nrb::wire::Compression::lz4);
        CHECK(b.chunk_bytes == (1u << 20));
        CHECK(b.chunks.size() == kStreamedBuffers[k].chunks);
        CHECK(b.shuffle == shuffled);
      }
    }
    CHECK(streamed.at(frames.front().frame));

    // Section 6.3.5 step 2: a frame's PARTs all before its FRAME, none of another frame's between them.
    size_t parts = 0, pending = 0;
    uint64_t pending_frame = 0;
    for (const auto& [kind, frame] : r.arrivals()) {
      if (kind == 'P') {
        if (pending > 0) CHECK(frame == pending_frame);
        pending_frame = frame;
        ++pending;
        ++parts;
        continue;
      }
      CAPTURE(frame);
      if (pending > 0) CHECK(pending_frame == frame);
      CHECK(pending == (streamed.at(frame) ? 8u : 0u));  // 3 + 3 + 2 chunks
      pending = 0;
    }
    CHECK(parts == r.parts_received());
    CHECK(parts >= 8);
  }
}

TEST_CASE("client: a renderer that does not list streamed_frames gets ordinary chunked frames") {
  TestRenderer::Options o;
  o.accept_chunked = true;
  o.accept_shuffle = true;
  TestRenderer r(o);
  nrb::client c(streaming_engine(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  const std::vector<std::string> caps = r.hellos().at(0).capabilities;
  CHECK(std::find(caps.begin(), caps.end(), "streamed_frames") != caps.end());  // offered, not taken
  stream_frames(c, r, 3);
  REQUIRE(r.frame_count() >= 3);
  CHECK(r.parts_received() == 0);
  CHECK(c.stats().errors_received == 0);
  check_buffers_exact(r);
  const auto frames = r.frames();
  const auto& b = frames.front().buffers.at(0);  // compressed in chunks over the pool, in the FRAME itself
  CHECK(b.compression == nrb::wire::Compression::lz4);
  CHECK_FALSE(b.streamed);
  CHECK(b.chunks.size() >= 2);
}

TEST_CASE("client: a JPEG or WebP image from the renderer comes back decoded, within a few steps of the pixels sent") {
  // Section 6.3.1: an engine that sets lossy_quality lets the renderer return its image in that codec; libnrb
  // decodes it on its pool (never on the I/O thread) into the result the engine acquires. A smooth image: the codecs
  // keep it within a few steps (the wire tests bound one image; this is the path through the client).
  constexpr uint32_t BW = 256, BH = 192;
  for (uint32_t codec : {uint32_t(NRB_LOSSY_CODEC_JPEG), uint32_t(NRB_LOSSY_CODEC_WEBP)}) {
    CAPTURE(codec);
    TestRenderer::Options o;
    o.accept_lossy = true;
    TestRenderer r(o);
    nrb::client_config cfg = lz4_color_config(r.endpoint(), BW, BH);
    cfg->deadline_ms = 2000;
    cfg->lossy_quality = 90;
    cfg->lossy_codec = codec;
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
    REQUIRE(r.hellos().at(0).lossy_output.has_value());
    CHECK(r.hellos()[0].lossy_output->codec == (codec == NRB_LOSSY_CODEC_WEBP ? "webp" : "jpeg"));
    auto smooth = [&](uint64_t id, size_t i) {
      const size_t px = i / 4, x = px % BW, y = px / BW;
      const size_t ch = i % 4;
      return static_cast<uint8_t>(ch == 3 ? 255 : x * (ch + 1) / 4 + y / 4 + id % 8);  // gradients, at most 245
    };
    std::vector<uint8_t> px(size_t(BW) * BH * 4);
    bool shown = false;
    const uint64_t received_before = c.stats().bytes_received;
    for (int tries = 0; tries < 200 && !shown; ++tries) {
      const uint64_t id = c.begin();
      for (size_t i = 0; i < px.size(); ++i) px[i] = smooth(id, i);
      c.tag_buffer("hudless_color", NRB_FORMAT_RGBA8, BW, BH, px.data());
      c.submit();
      std::this_thread::sleep_for(10ms);
      if (nrb::result res = c.acquire_result()) {
        REQUIRE(res.width() == BW);
        REQUIRE(res.height() == BH);
        const auto* got = static_cast<const uint8_t*>(res.pixels());
        int worst = 0;
        for (size_t i = 0; i < px.size(); ++i) {
          if (i % 4 == 3) continue;  // JPEG has no alpha; both decode to opaque RGBA
          worst = std::max(worst, std::abs(int(got[i]) - int(smooth(res.frame_id(), i))));
        }
        CHECK(worst <= 16);  // WebP's 4:2:0 chroma costs a few more steps than JPEG's on colour gradients
        CHECK(worst > 0);    // lossy, so not the bytes sent: the image did come back in the codec
        shown = true;
      }
    }
    CHECK(shown);
    // the images came back as a few KB each, not the 196 KB of raw pixels
    const auto s = c.stats();
    REQUIRE(s.results_received >= 1);
    CHECK((s.bytes_received - received_before) / s.results_received < size_t(BW) * BH * 4 / 4);
  }
}

TEST_CASE("client: set to zstd it sends zstd and takes the image back in lz4, the fast codec") {
  TestRenderer::Options o;
  o.output_compression = nrb::wire::Compression::lz4;  // answers lz4 only when the engine offered it
  TestRenderer r(o);
  auto cfg = config(r.endpoint());
  cfg->compression = NRB_COMPRESSION_ZSTD;
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return connected(c); }));
  const std::vector<std::string> caps = r.hellos().at(0).capabilities;
  CHECK(std::find(caps.begin(), caps.end(), "zstd") != caps.end());
  CHECK(std::find(caps.begin(), caps.end(), "lz4") != caps.end());
  CHECK(c.stats().compression_active == NRB_COMPRESSION_ZSTD);
  CHECK(render_until(c, 3) == 3);  // the lz4 images come back exact (render_until compares every pixel)
  auto frames = r.frames();
  REQUIRE_FALSE(frames.empty());
  bool zstd = false, other = false;
  for (const auto& b : frames.front().buffers) {
    zstd = zstd || b.compression == nrb::wire::Compression::zstd;
    other = other || b.compression == nrb::wire::Compression::lz4;
  }
  CHECK(zstd);
  CHECK_FALSE(other);
}

TEST_CASE("client: a renderer that does not offer compression gets raw buffers") {
  TestRenderer::Options o;
  o.accept.clear();
  TestRenderer r(o);
  auto cfg = config(r.endpoint());
  cfg->compression = NRB_COMPRESSION_ZSTD;
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(c.stats().compression_active == NRB_COMPRESSION_NONE);
  CHECK(render_until(c, 2) == 2);
}

TEST_CASE("client: submit and acquire return at once whether or not a renderer is there") {
  // "At once" means never waiting on the network: the shortest wait libnrb could block on here is the 100 ms ping
  // interval (connect and handshake 300 ms, server timeout 400 ms), so a call that took half of that waited for
  // something. The bound says that, not how fast a call is: the speed of submit is a benchmark's (nrb bench
  // transport). A 5 ms bound here failed once in about 15 runs under ThreadSanitizer, which is 5-15x slower.
  constexpr double kNeverWaitedMs = 50.0;
  auto measure = [](nrb::client& c) {
    std::vector<float> depth(W * H);
    double worst_ms = 0;
    for (int i = 0; i < 200; ++i) {
      c.begin();
      c.tag_buffer("depth", NRB_FORMAT_R32F, W, H, depth.data());
      auto t0 = Clock::now();
      c.submit();
      nrb::result r = c.acquire_result();
      auto t1 = Clock::now();
      worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    return worst_ms;
  };
  {
    nrb::client c(config("tcp://127.0.0.1:1"));  // nothing listens there
    CHECK(measure(c) < kNeverWaitedMs);
    auto s = c.stats();
    CHECK(s.frames_sent == 0);
    CHECK(s.frames_dropped == 200);
    CHECK(s.fallbacks == 200);
  }
  {
    TestRenderer::Options o;
    o.mute = true;
    TestRenderer r(o);
    nrb::client c(config(r.endpoint()));
    CHECK(measure(c) < kNeverWaitedMs);
  }
}

TEST_CASE("client: events reach a restarted renderer exactly once and in order") {
  TestRenderer r;
  auto cfg = config(r.endpoint());
  // A renderer taken for dead while it is only slow (ThreadSanitizer made answers take over config()'s 400 ms: 3-5
  // reconnects instead of 2) has applied the events libnrb then sends again: the window of protocol 5.9, engine
  // rule 4. This test is about restarts, which the new renderer's NO_SESSION tells at once.
  cfg->server_timeout_ms = 5000;
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return connected(c); }));
  std::vector<std::string> fired;
  int restarts = 0;
  for (int i = 0; i < 240; ++i) {
    std::string name = "e" + std::to_string(i);
    fired.push_back(name);
    engine_frame(c, false, name.c_str());
    if (i % 3 == 0) c.set_style(i % 2 ? "noir" : "identity", 0.5, 0.1);
    if (i == 60 || i == 150) {
      // Restarted with no frame of ours in flight: a frame it had processed and whose answer its restart then lost
      // would have its events applied twice (the same window).
      REQUIRE(wait_for([&] { return c.stats().in_flight == 0; }));
      r.restart();
      ++restarts;
    }
    std::this_thread::sleep_for(2ms);
    c.acquire_result();
  }
  // Keep rendering until the queue is empty (the last events ride on frames still to come).
  REQUIRE(wait_for(
      [&] {
        engine_frame(c);
        return c.stats().events_pending == 0;
      },
      5000ms));
  auto got = r.events();
  if (got != fired) {
    size_t i = 0;
    while (i < got.size() && i < fired.size() && got[i] == fired[i]) ++i;
    MESSAGE("events diverge at " << i << ": got " << (i < got.size() ? got[i] : "<end>") << ", fired "
                                 << (i < fired.size() ? fired[i] : "<end>") << " (" << got.size() << " received, "
                                 << c.stats().reconnects << " reconnects, " << c.stats().frames_lost << " frames lost)");
  }
  CHECK(got == fired);
  CHECK(r.styles().size() == 80);
  auto s = c.stats();
  CHECK(s.reconnects >= 2);
  CHECK(s.events_sent == 320);
}

TEST_CASE("client: a renderer that goes silent is dropped, the game falls back, and it resumes afterwards") {
  TestRenderer r;
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  REQUIRE(render_until(c, 2) == 2);
  auto o = r.options();
  o.mute = true;
  r.set(o);
  size_t hellos_before = r.hellos().size();
  // Silence is noticed (server_timeout 400 ms) and the client starts over with a new HELLO.
  auto until = Clock::now() + 1500ms;
  while (Clock::now() < until) {
    engine_frame(c);
    c.acquire_result();
    std::this_thread::sleep_for(5ms);
  }
  CHECK(c.stats().state != NRB_STATE_CONNECTED);
  CHECK(c.stats().fallbacks > 0);
  CHECK(c.stats().frames_lost >= 1);
  o.mute = false;
  r.set(o);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(r.hellos().size() > hellos_before);
  CHECK(render_until(c, 2) == 2);
}

TEST_CASE("client: results that miss the deadline are never shown and count as late") {
  TestRenderer::Options o;
  o.delay_ms = 60;
  TestRenderer r(o);
  auto cfg = config(r.endpoint());
  cfg->deadline_ms = 25;
  cfg->server_timeout_ms = 2000;
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return connected(c); }));
  int shown = 0;
  auto until = Clock::now() + 700ms;
  while (Clock::now() < until) {
    engine_frame(c);
    if (c.acquire_result()) ++shown;
    std::this_thread::sleep_for(4ms);
  }
  auto s = c.stats();
  CHECK(shown == 0);
  CHECK(s.results_late >= 3);
  CHECK(s.fallbacks > 50);
  CHECK(s.frames_dropped > 50);  // the renderer is behind: frames are dropped, not queued
  CHECK(s.in_flight <= 2);
}

TEST_CASE("client: garbage from the renderer is ignored; the client recovers once the renderer is sane") {
  TestRenderer::Options o;
  o.garbage = true;
  TestRenderer r(o);
  nrb::client c(config(r.endpoint()));
  auto until = Clock::now() + 500ms;
  while (Clock::now() < until) {
    engine_frame(c);
    CHECK_FALSE(c.acquire_result());
    std::this_thread::sleep_for(5ms);
  }
  CHECK(c.stats().state != NRB_STATE_CONNECTED);
  CHECK(c.stats().errors_received > 0);
  o.garbage = false;
  r.set(o);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(render_until(c, 2) == 2);
}

TEST_CASE("client: disabling stops all traffic within a frame and enabling resumes") {
  TestRenderer r;
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  REQUIRE(render_until(c, 2) == 2);
  const uint64_t fallbacks = c.stats().fallbacks;  // render_until's early acquires may have fallen back
  c.set_enabled(false);
  CHECK_FALSE(c.enabled());
  CHECK_FALSE(c.acquire_result());
  REQUIRE(wait_for([&] { return r.byes() == 1; }));
  size_t frames = r.frame_count();
  size_t messages = r.messages();
  for (int i = 0; i < 30; ++i) {
    engine_frame(c, false, i == 5 ? "while_disabled" : nullptr);
    CHECK_FALSE(c.acquire_result());
    std::this_thread::sleep_for(5ms);
  }
  CHECK(r.frame_count() == frames);
  CHECK(r.messages() == messages);  // not even a PING
  CHECK(c.stats().state == NRB_STATE_DISABLED);
  CHECK(c.stats().fallbacks == fallbacks);  // not counted while disabled
  c.set_enabled(true);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(render_until(c, 2) == 2);
  auto evs = r.events();
  REQUIRE_FALSE(evs.empty());
  CHECK(evs.back() == "while_disabled");
}

TEST_CASE("client: frames in flight never exceed the limit even when the renderer is slow") {
  TestRenderer::Options o;
  o.delay_ms = 20;
  o.max_in_flight = 8;
  TestRenderer r(o);
  auto cfg = config(r.endpoint());
  cfg->frames_in_flight = 2;
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return connected(c); }));
  uint64_t worst = 0;
  for (int i = 0; i < 100; ++i) {
    engine_frame(c);
    worst = std::max(worst, c.stats().in_flight);
    std::this_thread::sleep_for(1ms);
  }
  CHECK(worst <= 2);
  CHECK(c.stats().frames_dropped > 0);
}

TEST_CASE("client: CurveZMQ keys secure the connection") {
  if (!zmq_has("curve")) return;
  char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
  REQUIRE(zmq_curve_keypair(server_pub, server_sec) == 0);
  REQUIRE(zmq_curve_keypair(client_pub, client_sec) == 0);
  TestRenderer::Options o;
  o.curve_secret = server_sec;
  TestRenderer r(o);
  auto cfg = config(r.endpoint());
  cfg.curve_keys(server_pub, client_pub, client_sec);
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(render_until(c, 2) == 2);
  // Without keys the secured renderer never answers.
  nrb::client plain(config(r.endpoint()));
  std::this_thread::sleep_for(300ms);
  CHECK(plain.stats().state != NRB_STATE_CONNECTED);
}

TEST_CASE("client: the log callback reports the session") {
  TestRenderer r;
  LogLines log;
  auto cfg = config(r.endpoint());
  log.attach(cfg);
  {
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
  }
  CHECK(log.has("session"));
}

TEST_CASE("client: a renderer that refuses the session is not asked again and its message is surfaced") {
  TestRenderer::Options o;
  o.require = {"albedo"};  // the client offers hudless_color and depth only
  TestRenderer r(o);
  nrb::client c(config(r.endpoint()));  // backoff 10..100 ms: a retry loop would send many HELLOs per second
  REQUIRE(wait_for([&] { return c.state() == NRB_STATE_REFUSED; }));
  // The game keeps running (and falling back) meanwhile.
  auto until = Clock::now() + 1000ms;
  while (Clock::now() < until) {
    engine_frame(c);
    CHECK_FALSE(c.acquire_result());
    std::this_thread::sleep_for(5ms);
  }
  CHECK(r.hellos().size() == 1);  // no silent reconnect loop
  auto s = c.stats();
  CHECK(s.state == NRB_STATE_REFUSED);
  CHECK(s.errors_received == 1);
  CHECK(s.reconnects == 0);
  CHECK(s.frames_sent == 0);
  CHECK(s.refusal_code == 6);  // BAD_VALUE
  CHECK(std::string(s.refusal_message) ==
        "buffers: renderer 'test' needs buffers ['albedo'], which the engine does not offer");
  CHECK(c.last_error() == "the renderer at " + r.endpoint() +
                              " refused the session: BAD_VALUE (6): buffers: renderer 'test' needs buffers "
                              "['albedo'], which the engine does not offer");

  // Fixed on the server's side: retry() asks again and the session comes up; the refusal is forgotten.
  o.require.clear();
  r.set(o);
  c.retry();
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(r.hellos().size() == 2);
  CHECK(render_until(c, 2) == 2);
  s = c.stats();
  CHECK(s.refusal_code == 0);
  CHECK(std::string(s.refusal_message).empty());
  CHECK(c.last_error().empty());
  c.retry();  // not refused: a no-op
  std::this_thread::sleep_for(100ms);
  CHECK(connected(c));
  CHECK(r.hellos().size() == 2);
}

TEST_CASE("client: the player's toggle asks a refusing renderer again") {
  TestRenderer::Options o;
  o.require = {"albedo", "normals"};
  TestRenderer r(o);
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return c.state() == NRB_STATE_REFUSED; }));
  CHECK(std::string(c.stats().refusal_message).find("['albedo', 'normals']") != std::string::npos);
  c.set_enabled(false);
  REQUIRE(wait_for([&] { return c.state() == NRB_STATE_DISABLED; }));
  CHECK(std::string(c.stats().refusal_message).find("albedo") != std::string::npos);  // kept until a session
  c.retry();  // disabled: a no-op
  std::this_thread::sleep_for(100ms);
  CHECK(r.hellos().size() == 1);
  // Still refusing: enabling asks once more and is refused once more, with no loop.
  c.set_enabled(true);
  REQUIRE(wait_for([&] { return r.hellos().size() == 2 && c.state() == NRB_STATE_REFUSED; }));
  std::this_thread::sleep_for(300ms);
  CHECK(r.hellos().size() == 2);
  // A toggle faster than the I/O thread looks (off and on between two of its steps) still counts.
  o.require.clear();
  r.set(o);
  c.set_enabled(false);
  c.set_enabled(true);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(render_until(c, 2) == 2);
}

TEST_CASE("client: no WELCOME is not a refusal: the client keeps retrying and says why in last_error") {
  TestRenderer::Options o;
  o.mute = true;  // takes the connection and every HELLO, answers nothing
  TestRenderer r(o);
  nrb::client c(config(r.endpoint()));  // handshake_timeout_ms 300
  REQUIRE(wait_for([&] { return r.messages() >= 2 && !c.last_error().empty(); }, 5000ms));
  auto s = c.stats();
  CHECK(s.state == NRB_STATE_CONNECTING);
  CHECK(s.refusal_code == 0);
  std::string e = c.last_error();
  CHECK(e.find("no WELCOME from " + r.endpoint() + " within 300 ms (is `nrb serve` running there?)") == 0);
  CHECK(e.find(" so far, retrying") != std::string::npos);
  o.mute = false;
  r.set(o);
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(c.last_error().empty());  // a connection's complaint ends with the session it was waiting for
}

TEST_CASE("client: nothing listening is not a refusal either") {
  auto cfg = config("tcp://127.0.0.1:1");  // nothing listens on port 1
  nrb::client c(cfg);
  REQUIRE(wait_for([&] { return !c.last_error().empty(); }, 3000ms));
  CHECK(c.state() == NRB_STATE_CONNECTING);
  CHECK(c.last_error().find("tcp://127.0.0.1:1") != std::string::npos);
  CHECK(c.last_error().find("is `nrb serve` running there?") != std::string::npos);
}

TEST_CASE("client: run-time styles and post controls reach the renderer in order, typed as issued") {
  TestRenderer r;
  nrb::client c(config(r.endpoint()));
  REQUIRE(wait_for([&] { return connected(c); }));
  nrb::params p;
  p.set_float("hue", 35.0);
  p.begin_array("gain");
  p.set_float(nullptr, 0.85);
  p.set_float(nullptr, 1.1);
  p.set_int(nullptr, 1);  // an integer travels as a float (section 3.1)
  p.end();
  p.set_string("lut", "sunset");
  c.set_style_params("poison", p, 1.0, 0.5);
  c.set_intensity(0.25, 2.0);
  c.exclude(NRB_SCOPE_OBJECT, {7, 9});
  c.set_style("poison", 0.5, 0.0, NRB_SCOPE_MATERIAL, {3});
  c.include_all();
  REQUIRE(wait_for(
      [&] {
        engine_frame(c);
        return c.stats().events_pending == 0;
      },
      5000ms));
  std::vector<nrb::wire::StyleCommand> styles;
  std::vector<nrb::wire::Control> controls;
  for (const auto& f : r.frames()) {
    styles.insert(styles.end(), f.styles.begin(), f.styles.end());
    controls.insert(controls.end(), f.controls.begin(), f.controls.end());
  }
  REQUIRE(styles.size() == 2);
  REQUIRE(styles[0].params.has_value());
  const auto& ps = *styles[0].params;
  REQUIRE(ps.size() == 3);
  CHECK(ps[0].key == "hue");
  CHECK(ps[0].kind == nrb::wire::StyleParam::Kind::number);
  CHECK(ps[0].value[0] == 35.0);
  CHECK(ps[1].key == "gain");
  CHECK(ps[1].kind == nrb::wire::StyleParam::Kind::rgb);
  CHECK(ps[1].value == std::array<double, 3>{0.85, 1.1, 1.0});
  CHECK(ps[2].kind == nrb::wire::StyleParam::Kind::text);
  CHECK(ps[2].text == "sunset");
  CHECK_FALSE(styles[1].params.has_value());
  REQUIRE(controls.size() == 3);
  CHECK(controls[0].control == nrb::wire::ControlKind::intensity);
  CHECK(controls[0].value == 0.25);
  CHECK(controls[0].over == 2.0);
  CHECK(controls[1].control == nrb::wire::ControlKind::exclude);
  CHECK(controls[1].value == 1.0);
  CHECK(controls[1].target.ids == std::vector<uint32_t>{7, 9});
  CHECK(controls[2].value == 0.0);
  CHECK(controls[2].target.scope == nrb::wire::Scope::global);
  CHECK(c.stats().events_sent == 5);
}

TEST_CASE("client: frames compressed and images decompressed on the pool at once, with toggles and a teardown "
          "mid-flight, come back exact") {
  // Four frames in flight, each 1 MiB buffer compressed in chunks on libnrb's nrb-pool while earlier frames' chunked
  // lz4 images are decompressed on the same pool and a game thread reads stats and fires events; the player's toggle
  // ends the session with pool work outstanding, and the client is destroyed with frames still in flight. Run under
  // `make cpp-tsan` this is what exercises the pool, the I/O thread and the pipeline against each other.
  constexpr uint32_t BW = 512, BH = 512;
  TestRenderer::Options o;
  o.accept_chunked = true;
  o.output_compression = nrb::wire::Compression::lz4;
  o.output_chunk_bytes = 200000;
  o.max_in_flight = 4;
  TestRenderer r(o);
  nrb::client_config cfg = lz4_color_config(r.endpoint(), BW, BH);
  cfg->deadline_ms = 5000;
  cfg->server_timeout_ms = 5000;
  cfg->frames_in_flight = 4;
  auto pixels_for = [](uint64_t id, std::vector<uint8_t>& px) {
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / 4096 + i % 7 + id) & 0xff);
  };
  std::vector<uint8_t> px(size_t(BW) * BH * 4), want(px.size());
  int shown = 0;
  {
    nrb::client c(cfg);
    REQUIRE(wait_for([&] { return connected(c); }));
    std::atomic<bool> done{false};
    std::thread game([&] {  // a game thread beside the render thread
      while (!done.load()) {
        (void)c.stats();
        c.fire_event("tick");
        std::this_thread::sleep_for(1ms);
      }
    });
    uint64_t last = 0;
    for (int i = 0; i < 60; ++i) {
      if (i == 20 || i == 40) c.set_enabled(false);  // drains: frames in flight still come back through the pool
      if (i == 22 || i == 42) c.set_enabled(true);
      const uint64_t id = c.begin();
      pixels_for(id, px);
      c.tag_buffer("hudless_color", NRB_FORMAT_RGBA8, BW, BH, px.data());
      c.submit();
      std::this_thread::sleep_for(2ms);
      if (nrb::result res = c.acquire_result()) {
        CHECK(res.width() == BW);  // not REQUIRE: throwing here would leave `game` joinable (std::terminate)
        if (res.width() != BW) continue;
        pixels_for(res.frame_id(), want);
        CHECK(std::memcmp(res.pixels(), want.data(), want.size()) == 0);
        if (res.frame_id() != last) ++shown;
        last = res.frame_id();
      }
    }
    done.store(true);
    game.join();
    const nrb_stats s = c.stats();
    CHECK(s.frames_sent >= 4);
    CHECK(s.results_received >= 4);
    // destroyed here, frames still in flight and pool tasks possibly running
  }
  CHECK(shown >= 1);
}

TEST_CASE("client: frame_live says which frames will be sent, and a renderer too slow for the deadline gets few") {
  TestRenderer::Options o;
  o.delay_ms = 150;  // every render takes 150 ms
  TestRenderer r(o);
  auto cfg = config(r.endpoint());
  cfg->deadline_ms = 100;  // none of its images could be shown
  cfg->server_timeout_ms = 2000;
  nrb::client c(cfg);
  CHECK_FALSE(c.frame_live());  // no frame begun
  CHECK_FALSE(c.sending());     // not connected yet: a frame begun now would not be sent
  c.begin();
  CHECK_FALSE(c.frame_live());  // nor is this one
  c.submit();
  REQUIRE(wait_for([&] { return connected(c); }));
  CHECK(c.sending());  // connected: a frame begun now would be
  CHECK_FALSE(c.frame_live());
  // two renders answered: the first (warm-up) is not judged, the second says 150 ms against 100
  const auto until = Clock::now() + 3000ms;
  while (r.frames().size() < 2 && Clock::now() < until) {
    engine_frame(c);
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(r.frames().size() >= 2);
  REQUIRE(wait_for([&] { return c.stats().in_flight == 0; }));
  // a 200 fps loop until two frames went out: the second one render time (the 150 ms delay or more, as the renderer
  // reports it) after the first; the frames begun in between are not live
  int live = 0, begun = 0, would = 0;
  Clock::time_point first{}, second{};
  const auto until_two = Clock::now() + 5000ms;
  while (live < 2 && Clock::now() < until_two) {
    const bool before = c.sending();  // asked before beginning (as the Godot and Unreal plugins do): what begin says
    c.begin();
    const bool now = c.frame_live();
    would += before == now ? 1 : 0;
    if (now) (live++ == 0 ? first : second) = Clock::now();
    ++begun;
    c.submit();
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(live == 2);
  CHECK(second - first >= 140ms);
  CHECK(begun - live >= 10);
  CHECK(would >= begun - 1);  // one may fall between the two calls, just as the hold ends
  CHECK(c.stats().frames_dropped >= static_cast<uint64_t>(begun - live));
  CHECK(connected(c));
}
