// NRB/1 codec (cpp/src/protocol.cpp): the shared vectors of tests/vectors plus focused unit tests.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "protocol.hpp"
#include "protocol_json.hpp"

namespace fs = std::filesystem;
using namespace nrb::wire;
using nrb::wire::json::Json;

namespace {

using Blob = std::vector<uint8_t>;

fs::path vectors_dir() { return fs::path(NRB_SOURCE_DIR) / "tests" / "vectors"; }

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A .bin vector: 4-byte little-endian length, then the frame, repeated.
std::vector<Blob> read_frames(const fs::path& p) {
  const std::string data = read_text(p);
  std::vector<Blob> frames;
  size_t i = 0;
  while (i < data.size()) {
    REQUIRE(data.size() - i >= 4);
    uint32_t n = 0;
    for (int k = 3; k >= 0; --k) n = (n << 8) | static_cast<uint8_t>(data[i + k]);
    i += 4;
    REQUIRE(data.size() - i >= n);
    frames.emplace_back(data.begin() + i, data.begin() + i + n);
    i += n;
  }
  return frames;
}

std::vector<Bytes> views(const std::vector<Blob>& frames) {
  std::vector<Bytes> v;
  for (const auto& f : frames) v.emplace_back(f.data(), f.size());
  return v;
}

Blob to_blob(Bytes b) { return Blob(b.data, b.data + b.size); }

std::vector<Blob> encoded_frames(const Message& m) {
  Encoded e = encode(m);
  std::vector<Blob> out;
  for (size_t i = 0; i < e.frame_count(); ++i) out.push_back(to_blob(e.frame(i)));
  return out;
}

std::string hex(const Blob& b) { return nrb::wire::json::detail::hex(b.data(), b.size()); }

// The first differing byte, for readable failures.
std::string first_diff(const Blob& a, const Blob& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::ostringstream s;
  s << "sizes " << a.size() << " vs " << b.size() << ", first difference at byte " << i;
  return s.str();
}

DecodeResult decode_blobs(const std::vector<Blob>& frames, const DecodeOptions& o) {
  auto v = views(frames);
  return decode(v.data(), v.size(), o);
}

// ---- message builders for unit tests --------------------------------------------------------------------------
Frame basic_frame(Blob& pixels) {
  Frame f;
  f.session = 7;
  f.frame = 1;
  f.time_ns = 123456789;
  f.dt = 1.0 / 60;
  f.deadline_ms = 50;
  BufferDesc b;
  b.name = "albedo";
  b.format = Format::rgba8;
  b.width = 2;
  b.height = 2;
  b.stride = 8;
  pixels.resize(16);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 37);
  b.set_pixels(pixels.data(), pixels.size());
  f.buffers.push_back(b);
  return f;
}

// Minimal canonical msgpack writer for hand-built hostile headers.
struct Mp {
  Blob b;
  Mp& raw(std::initializer_list<int> bytes) {
    for (int x : bytes) b.push_back(static_cast<uint8_t>(x));
    return *this;
  }
  Mp& map(size_t n) { return n < 16 ? raw({int(0x80 | n)}) : raw({0xde, int(n >> 8), int(n & 255)}); }
  Mp& arr(size_t n) { return n < 16 ? raw({int(0x90 | n)}) : raw({0xdc, int(n >> 8), int(n & 255)}); }
  Mp& str(std::string_view s) {
    if (s.size() < 32)
      raw({int(0xa0 | s.size())});
    else if (s.size() < 256)
      raw({0xd9, int(s.size())});
    else
      raw({0xda, int(s.size() >> 8), int(s.size() & 255)});
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Mp& u(uint64_t v) {
    ParamsWriter w;
    w.u64(v);
    b.insert(b.end(), w.bytes().begin(), w.bytes().end());
    return *this;
  }
};

// PING header with `extra` extra entries appended by `more`.
template <typename F>
Blob ping_with(size_t extra, F&& more) {
  Mp m;
  m.map(4 + extra).str("nrb").u(1).str("type").str("PING").str("nonce").u(1).str("time_ns").u(2);
  more(m);
  return m.b;
}

ErrorCode code_of(const std::vector<Blob>& frames, const DecodeOptions& o = DecodeOptions::permissive()) {
  auto r = decode_blobs(frames, o);
  REQUIRE_FALSE(r.ok());
  return r.error.code;
}

}  // namespace

// =================================================================================================================
// Shared vectors
// =================================================================================================================
TEST_CASE("protocol: every shared vector in tests/vectors") {
  const fs::path dir = vectors_dir();
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    MESSAGE("no vectors in " << dir.string());
    return;
  }
  size_t valid = 0, invalid = 0;
  for (const auto& path : files) {
    const std::string name = path.stem().string();
    CAPTURE(name);
    const Json desc = json::parse_json(read_text(path));
    const auto frames = read_frames(fs::path(path).replace_extension(".bin"));
    ShmPool pool;
    const Json* context = desc.contains("context") ? &desc["context"] : nullptr;
    const DecodeOptions opts = json::options_from_context(context, pool);
    const DecodeResult r = decode_blobs(frames, opts);

    if (!desc.at("valid").get<bool>()) {
      ++invalid;
      const std::string want = desc.at("error").get<std::string>();
      CHECK_MESSAGE(!r.ok(), name << ": decoded, but should fail with " << want);
      if (!r.ok()) CHECK_MESSAGE(error_name(r.error.code) == want, name << ": " << r.error.message);
      continue;
    }
    ++valid;
    std::vector<Blob> payloads;
    for (const auto& h : desc.at("payloads")) payloads.push_back(json::detail::hex_bytes(h.get<std::string>()));
    std::vector<Blob> storage;
    const Message built = json::message_from_json(desc.at("header"), payloads, storage);

    // 1. encode(header + payloads) == .bin, byte for byte (unless decode-only).
    if (desc.value("encode", true)) {
      const auto got = encoded_frames(built);
      REQUIRE_MESSAGE(got.size() == frames.size(), name << ": frame count");
      for (size_t i = 0; i < got.size(); ++i)
        CHECK_MESSAGE(got[i] == frames[i], name << ": frame " << i << " differs: " << first_diff(got[i], frames[i])
                                                << "\n  ours:   " << hex(got[i]) << "\n  vector: " << hex(frames[i]));
    }

    // 2. decode(.bin) == header + payloads, compared as canonical header bytes (README: 1 and 1.0 compare equal).
    REQUIRE_MESSAGE(r.ok(), name << ": " << error_name(r.error.code) << ": " << r.error.message);
    const Encoded ours = encode(*r.message);
    const Encoded want = encode(built);
    CHECK_MESSAGE(ours.header == want.header, name << ": decoded header differs: " << first_diff(ours.header, want.header));
    CHECK_MESSAGE(json::message_to_json(*r.message) == json::message_to_json(built), name);
    const auto pixels = json::inline_pixels(*r.message);
    REQUIRE(pixels.size() == payloads.size());
    for (size_t i = 0; i < pixels.size(); ++i) CHECK_MESSAGE(to_blob(pixels[i]) == payloads[i], name << ": payload " << i);
    // Raw inline buffers are views into the received frames (no copy).
    if (auto* f = std::get_if<Frame>(&*r.message)) {
      size_t k = 1;
      for (const auto& b : f->buffers) {
        if (!b.is_inline()) continue;
        if (b.compression == Compression::none) CHECK(b.data == frames[k].data());
        ++k;
      }
    }
  }
  MESSAGE(valid << " valid and " << invalid << " invalid vectors checked");
  CHECK(valid > 0);
  CHECK(invalid > 0);
}

// =================================================================================================================
// Encoding
// =================================================================================================================
TEST_CASE("protocol: the byte shuffle puts byte j of texel i at j x n + i and keeps the tail (section 6.3.3)") {
  // Lengths around the 16-texel steps of the SSE2 paths (2, 4 and 8 bytes), texel sizes without one (3 and 16:
  // scalar only), and a long one (50001: thousands of SSE2 steps, then a scalar rest).
  for (unsigned t : {2u, 3u, 4u, 8u, 16u}) {
    for (size_t len : {size_t(0), size_t(1), size_t(7), size_t(31), size_t(32), size_t(33), size_t(63), size_t(64),
                       size_t(65), size_t(127), size_t(1000), size_t(4099), size_t(50001)}) {
      CAPTURE(t);
      CAPTURE(len);
      Blob raw(len), want(len), got(len), back(len);
      for (size_t i = 0; i < len; ++i) raw[i] = uint8_t(i * 7 + (i >> 3) + 1);
      const size_t n = len / t;
      for (size_t i = 0; i < n; ++i)
        for (unsigned j = 0; j < t; ++j) want[j * n + i] = raw[i * t + j];
      for (size_t r = n * t; r < len; ++r) want[r] = raw[r];
      shuffle_bytes(raw.data(), got.data(), len, t);
      CHECK(got == want);
      unshuffle_bytes(got.data(), back.data(), len, t);
      CHECK(back == raw);
    }
  }
}

TEST_CASE("protocol: canonical encoding details") {
  SUBCASE("integral floats are float64, ints are shortest") {
    Ping p;
    p.nonce = 200;
    p.time_ns = 70000;
    const Encoded e = encode(Message(p));
    // {nrb:1, type:"PING", nonce:200 (cc c8), time_ns:70000 (ce 00 01 11 70)}
    const Blob want = {0x84, 0xa3, 'n', 'r', 'b', 0x01, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'P', 'I', 'N', 'G',
                       0xa5, 'n', 'o', 'n', 'c', 'e', 0xcc, 0xc8, 0xa7, 't', 'i', 'm', 'e', '_', 'n', 's',
                       0xce, 0x00, 0x01, 0x11, 0x70};
    CHECK(e.header == want);
    CHECK(e.payloads.empty());
  }
  SUBCASE("dt = 0 and deadline 50 are written as 0xcb doubles") {
    Blob px;
    Frame f = basic_frame(px);
    f.dt = 0;
    f.deadline_ms = 50;
    const Encoded e = encode(Message(f));
    const Blob dt_key = {0xa2, 'd', 't', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(std::search(e.header.begin(), e.header.end(), dt_key.begin(), dt_key.end()) != e.header.end());
    const Blob dl = {0xcb, 0x40, 0x49, 0, 0, 0, 0, 0, 0};  // 50.0
    CHECK(std::search(e.header.begin(), e.header.end(), dl.begin(), dl.end()) != e.header.end());
  }
  SUBCASE("negative zero keeps its sign") {
    ParamsWriter w;
    w.f64(-0.0);
    CHECK(w.bytes() == Blob{0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0});
  }
  SUBCASE("shortest signed forms") {
    auto enc = [](int64_t v) {
      ParamsWriter w;
      w.i64(v);
      return w.bytes();
    };
    CHECK(enc(5) == Blob{0x05});
    CHECK(enc(-1) == Blob{0xff});
    CHECK(enc(-32) == Blob{0xe0});
    CHECK(enc(-33) == Blob{0xd0, 0xdf});
    CHECK(enc(-129) == Blob{0xd1, 0xff, 0x7f});
    CHECK(enc(200) == Blob{0xcc, 0xc8});
    CHECK(enc(std::numeric_limits<int64_t>::min()) == Blob{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0});
  }
  SUBCASE("payloads are the caller's memory, not copies") {
    Blob px;
    Frame f = basic_frame(px);
    const Encoded e = encode(Message(f));
    REQUIRE(e.payloads.size() == 1);
    CHECK(e.payloads[0].data == px.data());
    CHECK(e.payloads[0].size == px.size());
  }
  SUBCASE("shm buffers carry no payload frame") {
    Blob px;
    Frame f = basic_frame(px);
    f.buffers[0].shm = ShmRef{1, 64};
    CHECK(encode(Message(f)).payloads.empty());
  }
}

TEST_CASE("protocol: round trip of every message type") {
  Blob px;
  std::vector<Message> msgs;
  {
    Hello h;
    h.engine = "panda3d";
    h.engine_version = "1.10.14";
    h.client = "libnrb/0.1.0";
    h.capabilities = {"shm", "lz4"};
    h.render_size = {640, 360};
    h.output_size = {1280, 720};
    h.buffers = {{"albedo", Format::rgba8_srgb}, {"depth", Format::r32f}};
    h.shm = ShmPool{"/nrb-1234", 4, 1 << 20};
    msgs.emplace_back(h);
  }
  {
    Welcome w;
    w.session = 9;
    w.renderer = "deferred/0.1.0";
    w.required = {{"albedo", Format::rgba8}};
    w.output = {"output", Format::rgba8, 640, 360};
    w.max_in_flight = 2;
    w.styles = {"identity", "noir"};
    msgs.emplace_back(w);
  }
  {
    Frame f = basic_frame(px);
    Camera c;
    c.view_to_clip = Mat4{};
    c.near_plane = 0.1;
    c.far_plane = std::numeric_limits<double>::infinity();
    c.fov_y = 1.0;
    c.depth_infinite = true;
    c.render_size = Size2{640, 360};
    f.camera = c;
    Event e;
    e.name = "weapon_powerup";
    ParamsWriter pw;
    pw.map(3).str("level").u64(3).str("scale").f64(2.0).str("tags").array(2).str("a").nil();
    e.params = pw.take();
    e.target = {Scope::object, {42, 0xffffffffu}};
    f.events.push_back(e);
    f.styles.push_back({"noir", 0.5, 2.0, {Scope::material, {3}}});
    msgs.emplace_back(f);
  }
  {
    Result r;
    r.session = 7;
    r.frame = 1;
    r.status = ResultStatus::skipped;
    r.timing = {0.1, 0.2, 0.3, 0.4, 0.5, 1.5};
    msgs.emplace_back(r);
  }
  msgs.emplace_back(make_error(ErrorCode::PAYLOAD_MISMATCH, "albedo: too short"));
  msgs.emplace_back(Ping{{}, 5, 6});
  msgs.emplace_back(Pong{{}, 5, 6});
  msgs.emplace_back(Bye{});
  {
    Bye b;
    b.session = 3;
    b.reason = "shutdown";
    msgs.emplace_back(b);
  }
  for (const auto& m : msgs) {
    CAPTURE(std::string(type_name(message_type(m))));
    const Encoded e = encode(m);
    std::vector<Bytes> frames;
    for (size_t i = 0; i < e.frame_count(); ++i) frames.push_back(e.frame(i));
    const DecodeResult r = decode(frames, DecodeOptions::permissive());
    REQUIRE_MESSAGE(r.ok(), r.error.message);
    CHECK(message_type(*r.message) == message_type(m));
    CHECK(encode(*r.message).header == e.header);
  }
}

// =================================================================================================================
// Decoding: structure, limits, hostile input
// =================================================================================================================
TEST_CASE("protocol: header structure (step 1-2)") {
  const auto opts = DecodeOptions::permissive();
  CHECK(decode(nullptr, 0, opts).error.code == ErrorCode::MALFORMED);
  CHECK(code_of({Blob{}}) == ErrorCode::MALFORMED);
  CHECK(code_of({Blob{0xc1}}) == ErrorCode::MALFORMED);
  CHECK(code_of({Blob{0x91, 0x01}}) == ErrorCode::MALFORMED);  // array, not map

  const Blob good = ping_with(0, [](Mp&) {});
  REQUIRE(decode_blobs({good}, opts).ok());

  SUBCASE("every truncation is MALFORMED") {
    for (size_t n = 0; n < good.size(); ++n) CHECK(code_of({Blob(good.begin(), good.begin() + n)}) == ErrorCode::MALFORMED);
  }
  SUBCASE("trailing bytes") {
    Blob t = good;
    t.push_back(0xc0);
    CHECK(code_of({t}) == ErrorCode::MALFORMED);
  }
  SUBCASE("header over 65536 bytes is LIMIT_EXCEEDED, checked before parsing") {
    Blob big(65537, 0xc1);
    CHECK(code_of({big}) == ErrorCode::LIMIT_EXCEEDED);
    const Blob at_limit = ping_with(1, [](Mp& m) { m.str("x_pad").str(std::string(65536 - 40 - 3 - 8, 'a')); });
    CHECK(at_limit.size() <= 65536);
    CHECK(decode_blobs({at_limit}, opts).ok());
  }
  SUBCASE("huge declared lengths fail without allocating") {
    // map32 declaring 2^32-1 entries; array32 / str32 / bin32 declaring 4 GiB inside a valid map
    CHECK(code_of({Blob{0xdf, 0xff, 0xff, 0xff, 0xff}}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xdd, 0xff, 0xff, 0xff, 0xff}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xdb, 0xff, 0xff, 0xff, 0xff}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xc6, 0xff, 0xff, 0xff, 0xff}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xde, 0xff, 0xff}); })}) == ErrorCode::MALFORMED);
  }
  SUBCASE("nesting: 16 containers pass, 17 are MALFORMED") {
    auto nested = [](int levels) {
      return ping_with(1, [&](Mp& m) {
        m.str("x_deep");
        for (int i = 0; i < levels; ++i) m.arr(1);
        m.u(1);
      });
    };
    CHECK(decode_blobs({nested(15)}, opts).ok());  // header map + 15 arrays = 16 containers
    CHECK(code_of({nested(16)}) == ErrorCode::MALFORMED);
    CHECK(code_of({nested(100000 / 2)}) == ErrorCode::MALFORMED);
  }
  SUBCASE("ext, non-str keys, invalid UTF-8") {
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xd4, 0x05, 0x00}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xc7, 0x01, 0xff, 0x00}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.u(5).u(1); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.raw({0xc4, 0x01, 'x'}).u(1); })}) == ErrorCode::MALFORMED);  // bin key
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").map(1).u(1).u(1); })}) == ErrorCode::MALFORMED);  // nested
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xa2, 0xc3, 0x28}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xa3, 0xed, 0xa0, 0x80}); })}) == ErrorCode::MALFORMED);
    CHECK(code_of({ping_with(1, [](Mp& m) { m.str("x").raw({0xa2, 0xc0, 0x80}); })}) == ErrorCode::MALFORMED);
    CHECK(decode_blobs({ping_with(1, [](Mp& m) { m.str("x_u").str("\xc3\xa9\xf0\x9f\x98\x80"); })}, opts).ok());
  }
}

TEST_CASE("protocol: field checks follow section 9.1") {
  const auto opts = DecodeOptions::permissive();
  auto header_code = [&](const Blob& h) { return code_of({h}, opts); };
  SUBCASE("nrb / type / version / must_understand order") {
    CHECK(header_code(Mp().map(1).str("type").str("PING").b) == ErrorCode::MISSING_FIELD);
    CHECK(header_code(Mp().map(1).str("nrb").raw({0xc3}).b) == ErrorCode::WRONG_TYPE);  // bool is not a uint
    CHECK(header_code(Mp().map(1).str("nrb").raw({0xff}).b) == ErrorCode::WRONG_TYPE);  // -1
    CHECK(header_code(Mp().map(1).str("nrb").u(1).b) == ErrorCode::MISSING_FIELD);
    CHECK(header_code(Mp().map(2).str("nrb").u(1).str("type").u(4).b) == ErrorCode::WRONG_TYPE);
    CHECK(header_code(Mp().map(2).str("nrb").u(9).str("type").str("TELEPORT").b) == ErrorCode::UNKNOWN_TYPE);
    CHECK(header_code(Mp().map(2).str("nrb").u(2).str("type").str("PING").b) == ErrorCode::VERSION_UNSUPPORTED);
    // must_understand is checked before the message's own keys
    CHECK(header_code(Mp().map(3).str("nrb").u(1).str("type").str("PING").str("must_understand").arr(1).str("x_a").b) ==
          ErrorCode::UNKNOWN_REQUIRED);
    CHECK(header_code(Mp().map(3).str("nrb").u(1).str("type").str("PING").str("must_understand").str("nonce").b) ==
          ErrorCode::WRONG_TYPE);
    CHECK(header_code(Mp().map(3).str("nrb").u(1).str("type").str("PING").str("must_understand").arr(1).str("nonce").b) ==
          ErrorCode::MISSING_FIELD);
    // a key defined for another message type is not understood on this one
    CHECK(header_code(ping_with(1, [](Mp& m) { m.str("must_understand").arr(1).str("camera"); })) ==
          ErrorCode::UNKNOWN_REQUIRED);
    auto r = decode_blobs({ping_with(1, [](Mp& m) { m.str("must_understand").arr(2).str("nonce").str("nrb"); })}, opts);
    REQUIRE(r.ok());
    CHECK_FALSE(std::get<Ping>(*r.message).must_understand.has_value());  // checked, then dropped
  }
  SUBCASE("HELLO version range") {
    Hello h;
    h.engine = h.engine_version = h.client = "x";
    h.render_size = h.output_size = {1, 1};
    auto code = [&](uint64_t nrb, uint64_t minv) {
      h.nrb = nrb;
      h.min_version = minv;
      auto r = decode(std::vector<Bytes>{encode(Message(h)).frame(0)}, opts);
      return r.ok() ? ErrorCode::INTERNAL : r.error.code;
    };
    CHECK(code(3, 1) == ErrorCode::INTERNAL);  // ok: 1 is in [1, 3]
    CHECK(code(3, 2) == ErrorCode::VERSION_UNSUPPORTED);
    CHECK(code(0, 0) == ErrorCode::VERSION_UNSUPPORTED);
    CHECK(code(1, 2) == ErrorCode::BAD_VALUE);  // min_version > nrb
  }
  SUBCASE("ERROR accepts any code and name") {
    Error e;
    e.code = static_cast<ErrorCode>(99);
    e.name = "FUTURE";
    e.message = std::string(1024, 'm');
    auto r = decode(std::vector<Bytes>{encode(Message(e)).frame(0)}, opts);
    REQUIRE(r.ok());
    CHECK(static_cast<uint64_t>(std::get<Error>(*r.message).code) == 99);
    e.name.clear();  // written verbatim, even when empty
    const Encoded empty_name = encode(Message(e));
    auto r2 = decode(std::vector<Bytes>{empty_name.frame(0)}, opts);
    REQUIRE(r2.ok());
    CHECK(std::get<Error>(*r2.message).name.empty());
    CHECK(encode(*r2.message).header == empty_name.header);
    e.message += "m";
    CHECK(decode(std::vector<Bytes>{encode(Message(e)).frame(0)}, opts).error.code == ErrorCode::LIMIT_EXCEEDED);
  }
}

TEST_CASE("protocol: FRAME field checks") {
  const ShmPool pool{"/nrb-test", 4, 4096};
  const auto opts = DecodeOptions::permissive(&pool);
  Blob px;
  auto check_at = [&](int line, auto&& mutate, ErrorCode want, bool with_payload = true) {
    CAPTURE(line);
    Frame f = basic_frame(px);
    mutate(f);
    Encoded e = encode(Message(f));
    std::vector<Bytes> frames{e.frame(0)};
    if (with_payload)
      for (auto& p : e.payloads) frames.push_back(p);
    auto r = decode(frames, opts);
    if (want == ErrorCode::INTERNAL) {
      CHECK_MESSAGE(r.ok(), r.error.message);
    } else {
      REQUIRE_FALSE(r.ok());
      CHECK_MESSAGE(r.error.code == want, r.error.message);
    }
  };
#define check(...) check_at(__LINE__, __VA_ARGS__)
  const auto OK = ErrorCode::INTERNAL;
  check([](Frame&) {}, OK);
  check([](Frame& f) { f.dt = 10.5; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.dt = std::nan(""); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.deadline_ms = 0; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.deadline_ms = 60000; }, OK);
  check([](Frame& f) { f.buffers[0].width = 0; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.buffers[0].width = 16385; }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.buffers[0].stride = 7; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.buffers[0].stride = (1ull << 31) + 1; }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) {
    f.buffers[0].width = 16384;
    f.buffers[0].height = 16384;
    f.buffers[0].stride = 16384 * 16;
    f.buffers[0].format = Format::rgba32f;
  }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.buffers[0].name = "sparkles"; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.buffers[0].name = std::string(65, 'a'); }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.buffers[0].name = "x_" + std::string(61, 'a'); }, OK);
  check([](Frame& f) { f.buffers[0].name = "output"; }, OK);  // in the vocabulary (section 6.1)
  check([](Frame& f) { f.buffers.push_back(f.buffers[0]); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) {
    for (int i = 0; i < 32; ++i) {
      BufferDesc b = f.buffers[0];
      b.name = "x_b" + std::to_string(i);
      f.buffers.push_back(b);
    }
  }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.buffers[0].shm = ShmRef{3, 4096}; }, ErrorCode::BAD_VALUE, false);  // overruns the slot
  check([](Frame& f) { f.buffers[0].shm = ShmRef{3, 4096 - 64}; }, OK, false);                // the last 64 bytes
  check([](Frame& f) { f.buffers[0].shm = ShmRef{4, 0}; }, ErrorCode::BAD_VALUE, false);      // slot >= slots
  check([](Frame& f) { f.buffers[0].shm = ShmRef{0, 32}; }, ErrorCode::BAD_VALUE, false);     // unaligned
  check([](Frame& f) {
    f.buffers[0].shm = ShmRef{0, 0};
    f.buffers[0].compression = Compression::lz4;
  }, ErrorCode::BAD_VALUE, false);
  check([](Frame& f) { f.result_slot = 4; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.result_slot = 3; }, OK);
  check([](Frame& f) { f.events.push_back({"", {0x80}, {}}); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.events.push_back({std::string(65, 'e'), {0x80}, {}}); }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.events.push_back({"e", {0x80}, {Scope::object, {}}}); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.events.push_back({"e", {0x80}, {Scope::global, {1}}}); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.events.assign(257, Event{"e", {0x80}, {}}); }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.events.assign(256, Event{"e", {0x80}, {}}); }, OK);
  check([](Frame& f) { f.styles.push_back({"noir", 1.5, 0, {}}); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.styles.push_back({"noir", 1, 3601, {}}); }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->near_plane = 0; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->near_plane = 1; f.camera->far_plane = 1; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->far_plane = -HUGE_VAL; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->far_plane = HUGE_VAL; }, OK);
  check([](Frame& f) { f.camera = Camera{}; f.camera->fov_y = 3.14159265358979323846; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->position = Vec3{0, HUGE_VAL, 0}; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->render_size = Size2{0, 1}; }, ErrorCode::BAD_VALUE);
  check([](Frame& f) { f.camera = Camera{}; f.camera->render_size = Size2{1, 16385}; }, ErrorCode::LIMIT_EXCEEDED);
  check([](Frame& f) { f.camera = Camera{}; }, OK);
  // payload checks come last: a bad payload does not hide a header error, and vice versa
  check([](Frame& f) { f.buffers[0].size = 15; f.buffers[0].payload_size = 15; }, ErrorCode::PAYLOAD_MISMATCH);
  check([](Frame& f) { f.buffers[0].payload_size = 15; f.dt = -1; }, ErrorCode::BAD_VALUE);
#undef check
  {  // a payload frame for a buffer that lives in shared memory is one frame too many
    Frame f = basic_frame(px);
    f.buffers[0].shm = ShmRef{3, 4096 - 64};
    Encoded e = encode(Message(f));
    REQUIRE(e.payloads.empty());
    CHECK(decode(std::vector<Bytes>{e.frame(0), Bytes(px.data(), px.size())}, opts).error.code == ErrorCode::MALFORMED);
  }
}

TEST_CASE("protocol: params") {
  auto canon = [](const Blob& b, Blob* out = nullptr) {
    auto e = canonicalize_params(b.data(), b.size(), out);
    return e ? e->code : ErrorCode::INTERNAL;
  };
  Blob out;
  // float32 and an int8-encoded 5 are re-encoded canonically
  CHECK(canon({0x82, 0xa1, 'a', 0xca, 0x3f, 0xc0, 0, 0, 0xa1, 'b', 0xd0, 0x05}, &out) == ErrorCode::INTERNAL);
  CHECK(out == Blob{0x82, 0xa1, 'a', 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xa1, 'b', 0x05});
  // duplicate key: first position, last value (what a Python dict holds)
  CHECK(canon({0x83, 0xa1, 'a', 1, 0xa1, 'b', 2, 0xa1, 'a', 3}, &out) == ErrorCode::INTERNAL);
  CHECK(out == Blob{0x82, 0xa1, 'a', 3, 0xa1, 'b', 2});
  // depth: the params map is 1; 8 levels pass, 9 fail
  auto nested = [](int levels) {
    Mp m;
    for (int i = 0; i < levels; ++i) m.map(1).str("k");
    m.u(1);
    return m.b;
  };
  CHECK(canon(nested(8)) == ErrorCode::INTERNAL);
  CHECK(canon(nested(9)) == ErrorCode::LIMIT_EXCEEDED);
  // size: > 4096 canonical bytes
  CHECK(canon(Mp().map(1).str("blob").str(std::string(4096 - 9, 'z')).b) == ErrorCode::INTERNAL);
  CHECK(canon(Mp().map(1).str("blob").str(std::string(4096 - 8, 'z')).b) == ErrorCode::LIMIT_EXCEEDED);
  CHECK(canon({0x91, 0x01}) == ErrorCode::WRONG_TYPE);
  CHECK(canon({0x81, 0x01, 0x01}) == ErrorCode::MALFORMED);
}

TEST_CASE("protocol: compression") {
  Blob px;
  Frame base = basic_frame(px);
  base.buffers[0].width = 64;
  base.buffers[0].height = 32;
  base.buffers[0].stride = 256;
  px.assign(256 * 32, 0);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / 7) & 0xff);
  base.buffers[0].set_pixels(px.data(), px.size());

  for (Compression c : {Compression::lz4, Compression::zstd}) {
    CAPTURE(std::string(compression_name(c)));
    Frame f = base;
    Blob z = compress(c, px.data(), px.size());
    CHECK(z.size() < px.size());
    f.buffers[0].compression = c;
    f.buffers[0].payload = z.data();
    f.buffers[0].payload_size = z.size();
    Encoded e = encode(Message(f));
    std::vector<Bytes> frames{e.frame(0), e.frame(1)};
    CHECK(frames[1].data == z.data());

    auto r = decode(frames, DecodeOptions::permissive());
    REQUIRE_MESSAGE(r.ok(), r.error.message);
    const BufferDesc& b = std::get<Frame>(*r.message).buffers[0];
    CHECK(Blob(b.data, b.data + b.size) == px);
    CHECK(b.payload == z.data());
    CHECK(b.owned != nullptr);

    // not negotiated
    DecodeOptions none;
    CHECK(decode(frames, none).error.code == ErrorCode::BAD_VALUE);
    DecodeOptions other = DecodeOptions::permissive();
    (c == Compression::lz4 ? other.allow_lz4 : other.allow_zstd) = false;
    CHECK(decode(frames, other).error.code == ErrorCode::BAD_VALUE);

    // the announced size must be stride x height: one byte more or less
    for (int delta : {-1, 1}) {
      Blob other_px(px.size() + delta, 1);
      Blob z2 = compress(c, other_px.data(), other_px.size());
      frames[1] = Bytes(z2.data(), z2.size());
      CHECK(decode(frames, DecodeOptions::permissive()).error.code == ErrorCode::PAYLOAD_MISMATCH);
    }
    // truncated, trailing garbage, garbage, raw bytes
    Blob cut(z.begin(), z.end() - 3);
    frames[1] = Bytes(cut.data(), cut.size());
    CHECK(decode(frames, DecodeOptions::permissive()).error.code == ErrorCode::PAYLOAD_MISMATCH);
    Blob trail = z;
    trail.push_back(0);
    frames[1] = Bytes(trail.data(), trail.size());
    CHECK(decode(frames, DecodeOptions::permissive()).error.code == ErrorCode::PAYLOAD_MISMATCH);
    frames[1] = Bytes(px.data(), px.size());
    CHECK(decode(frames, DecodeOptions::permissive()).error.code == ErrorCode::PAYLOAD_MISMATCH);
    Blob tiny{0};
    frames[1] = Bytes(tiny.data(), tiny.size());
    CHECK(decode(frames, DecodeOptions::permissive()).error.code == ErrorCode::PAYLOAD_MISMATCH);
    // corrupted body: must fail cleanly (or, if the corruption is benign, still produce exactly stride x height)
    for (size_t i = 0; i < z.size(); ++i) {
      Blob bad = z;
      bad[i] ^= 0x5a;
      frames[1] = Bytes(bad.data(), bad.size());
      auto rr = decode(frames, DecodeOptions::permissive());
      if (rr.ok())
        CHECK(std::get<Frame>(*rr.message).buffers[0].size == px.size());
      else
        CHECK(rr.error.code == ErrorCode::PAYLOAD_MISMATCH);
    }
  }
  SUBCASE("frames without an announced content size are rejected") {
    // zstd streaming API without a pledged size writes no content size
    Blob z = compress(Compression::zstd, px.data(), px.size());
    Blob lz = compress(Compression::lz4, px.data(), px.size());
    REQUIRE(lz.size() > 14);
    // clear the LZ4 content-size flag (FLG bit 3) and drop the 8 size bytes; the header checksum then fails,
    // which is also PAYLOAD_MISMATCH
    Blob nolen = lz;
    nolen[4] &= static_cast<uint8_t>(~0x08);
    nolen.erase(nolen.begin() + 6, nolen.begin() + 14);
    Frame f = base;
    f.buffers[0].compression = Compression::lz4;
    f.buffers[0].payload = nolen.data();
    f.buffers[0].payload_size = nolen.size();
    Encoded e = encode(Message(f));
    CHECK(decode(std::vector<Bytes>{e.frame(0), e.frame(1)}, DecodeOptions::permissive()).error.code ==
          ErrorCode::PAYLOAD_MISMATCH);
  }
}

// =================================================================================================================
// Streamed images (section 5.12, 6.3.4)
// =================================================================================================================
namespace {

// A RESULT whose 64x32 rgba8 output (8192 bytes) came ahead in 3 lz4 chunks of 3000 raw bytes (the last 2192).
struct Streamed {
  Blob px;
  std::vector<Blob> chunks;
  Result result;
  Streamed() {
    px.resize(64 * 32 * 4);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / 5) & 0xff);
    result.session = 7;
    result.frame = 3;
    BufferDesc& o = result.output.emplace();
    o.name = "output";
    o.width = 64;
    o.height = 32;
    o.stride = 256;
    o.compression = Compression::lz4;
    o.chunk_bytes = 3000;
    o.streamed = true;
    for (size_t at = 0; at < px.size(); at += 3000) {
      chunks.push_back(compress(Compression::lz4, px.data() + at, std::min<size_t>(3000, px.size() - at)));
      o.chunks.push_back(chunks.back().size());
    }
  }
  Part part(uint64_t index) const {
    Part p;
    p.session = 7;
    p.frame = 3;
    p.index = index;
    p.payload = chunks[index].data();
    p.payload_size = chunks[index].size();
    return p;
  }
};

// A PART header built by hand: `session`, `frame`, `buffer`, `index` as given (an empty Mp: the key is absent).
Blob part_header(const Mp& buffer, const Mp& index) {
  Mp m;
  m.map(4 + !buffer.b.empty() + !index.b.empty()).str("nrb").u(1).str("type").str("PART");
  m.str("session").u(7).str("frame").u(3);
  if (!buffer.b.empty()) m.str("buffer"), m.b.insert(m.b.end(), buffer.b.begin(), buffer.b.end());
  if (!index.b.empty()) m.str("index"), m.b.insert(m.b.end(), index.b.begin(), index.b.end());
  return m.b;
}

}  // namespace

TEST_CASE("protocol: PART round trip: the canonical header, then its payload as it is") {
  Streamed s;
  const Part p = s.part(1);
  const Encoded e = encode(Message(p));
  REQUIRE(e.frame_count() == 2);
  CHECK(e.frame(1).data == s.chunks[1].data());
  Mp want;
  want.map(6).str("nrb").u(1).str("type").str("PART").str("session").u(7).str("frame").u(3);
  want.str("buffer").str("output").str("index").u(1);
  CHECK(e.header == want.b);
  const DecodeResult r = decode(std::vector<Bytes>{e.frame(0), e.frame(1)}, DecodeOptions::permissive());
  REQUIRE_MESSAGE(r.ok(), r.error.message);
  const Part& got = std::get<Part>(*r.message);
  CHECK(got.session == 7);
  CHECK(got.frame == 3);
  CHECK(got.buffer == "output");
  CHECK(got.index == 1);
  CHECK(got.payload == s.chunks[1].data());  // a view, never decompressed
  CHECK(got.payload_size == s.chunks[1].size());
  CHECK(type_name(MessageType::part) == "PART");
  CHECK(type_from_name("PART") == MessageType::part);
  CHECK(json::message_to_json(*r.message) == json::message_to_json(Message(p)));
  CHECK(json::inline_pixels(*r.message).at(0).data == s.chunks[1].data());
}

TEST_CASE("protocol: PART checks follow section 9.1") {
  Streamed s;
  const Blob chunk = s.chunks[0];
  // `negotiated`: streamed_output; `frames_negotiated`: streamed_frames (section 6.3.5)
  auto code = [&](const Blob& header, std::vector<Blob> payloads = {}, bool negotiated = true,
                  bool frames_negotiated = true) {
    std::vector<Blob> frames{header};
    for (auto& p : payloads) frames.push_back(p);
    DecodeOptions o = DecodeOptions::permissive();
    o.allow_streamed_output = negotiated;
    o.allow_streamed_frames = frames_negotiated;
    auto r = decode_blobs(frames, o);
    return r.ok() ? ErrorCode{} : r.error.code;
  };
  Mp out, idx;
  out.str("output");
  idx.u(0);
  CHECK(code(part_header(out, idx), {chunk}) == ErrorCode{});
  // missing keys, in canonical order
  CHECK(code(part_header(Mp(), idx), {chunk}) == ErrorCode::MISSING_FIELD);
  CHECK(code(part_header(out, Mp()), {chunk}) == ErrorCode::MISSING_FIELD);
  // buffer: a str, at most 64 bytes, a buffer name
  Mp num;
  num.u(1);
  CHECK(code(part_header(num, idx), {chunk}) == ErrorCode::WRONG_TYPE);
  Mp long_name;
  long_name.str("x_" + std::string(63, 'a'));
  CHECK(code(part_header(long_name, idx), {chunk}) == ErrorCode::LIMIT_EXCEEDED);
  for (const char* name : {"", "not a buffer", "Albedo"}) {
    CAPTURE(name);
    Mp n;
    n.str(name);
    CHECK(code(part_header(n, idx), {chunk}) == ErrorCode::BAD_VALUE);
  }
  // index: 0..255
  Mp last, over, neg, text;
  last.u(255);
  over.u(256);
  neg.raw({0xff});  // -1
  text.str("0");
  CHECK(code(part_header(out, last), {chunk}) == ErrorCode{});
  CHECK(code(part_header(out, over), {chunk}) == ErrorCode::LIMIT_EXCEEDED);
  CHECK(code(part_header(out, neg), {chunk}) == ErrorCode::WRONG_TYPE);
  CHECK(code(part_header(out, text), {chunk}) == ErrorCode::WRONG_TYPE);
  // not negotiated: BAD_VALUE, after index (a bad index wins) and before the payload count
  CHECK(code(part_header(out, idx), {chunk}, false) == ErrorCode::BAD_VALUE);
  CHECK(code(part_header(out, over), {chunk}, false) == ErrorCode::LIMIT_EXCEEDED);
  CHECK(code(part_header(out, idx), {}, false) == ErrorCode::BAD_VALUE);
  // a FRAME buffer's PART (section 6.3.5): only where streamed_frames was negotiated, whatever streamed_output says
  for (const char* name : {"albedo", "depth", "x_vendor"}) {
    CAPTURE(name);
    Mp n;
    n.str(name);
    CHECK(code(part_header(n, idx), {chunk}) == ErrorCode{});
    CHECK(code(part_header(n, idx), {chunk}, /*negotiated=*/false) == ErrorCode{});
    CHECK(code(part_header(n, idx), {chunk}, true, /*frames_negotiated=*/false) == ErrorCode::BAD_VALUE);
    CHECK(code(part_header(n, over), {chunk}, true, false) == ErrorCode::LIMIT_EXCEEDED);  // index first
    CHECK(code(part_header(n, idx), {}, true, false) == ErrorCode::BAD_VALUE);  // before the payload count
    CHECK(code(part_header(n, idx), {}, true, true) == ErrorCode::MALFORMED);
  }
  // "output" needs streamed_output alone
  CHECK(code(part_header(out, idx), {chunk}, true, /*frames_negotiated=*/false) == ErrorCode{});
  // exactly one payload frame, 1.. bytes
  CHECK(code(part_header(out, idx), {}) == ErrorCode::MALFORMED);
  CHECK(code(part_header(out, idx), {chunk, chunk}) == ErrorCode::MALFORMED);
  CHECK(code(part_header(out, idx), {Blob{}}) == ErrorCode::BAD_VALUE);
  // the payload is not looked into: any bytes are a PART's chunk (its RESULT checks them)
  CHECK(code(part_header(out, idx), {Blob{1, 2, 3}}) == ErrorCode{});
  // must_understand may name PART's keys, and only those
  for (auto [key, want] : {std::pair{"index", ErrorCode{}}, std::pair{"buffer", ErrorCode{}},
                           std::pair{"status", ErrorCode::UNKNOWN_REQUIRED}}) {
    CAPTURE(key);
    Blob h = part_header(out, idx);
    h[0] = static_cast<uint8_t>(h[0] + 1);  // one more entry (fixmap)
    Mp mu;
    mu.str("must_understand").arr(1).str(key);
    h.insert(h.end(), mu.b.begin(), mu.b.end());
    CHECK(code(h, {chunk}) == want);
  }
}

TEST_CASE("protocol: PART payload above 2^31 bytes is LIMIT_EXCEEDED") {
  // A view that claims more than 2^31 bytes: the length check comes before anything reads it.
  Mp out, idx;
  out.str("output");
  idx.u(0);
  const Blob h = part_header(out, idx);
  static const uint8_t byte = 1;
  std::vector<Bytes> frames{Bytes(h.data(), h.size()), Bytes(&byte, size_t(kMaxChunkWireBytes) + 1)};
  CHECK(decode(frames, DecodeOptions::permissive()).error.code == ErrorCode::LIMIT_EXCEEDED);
}

TEST_CASE("protocol: a streamed RESULT output has no payload frame and is checked at `streamed`") {
  Streamed s;
  const Encoded e = encode(Message(s.result));
  REQUIRE(e.frame_count() == 1);  // no payload frame
  CHECK(std::search(e.header.begin(), e.header.end(), std::begin("\xa6" "filter"), std::end("\xa6" "filter") - 1) ==
        e.header.end());
  {  // canonical position: right after chunk_bytes (no filter here), `streamed: true`
    Mp tail;
    tail.str("chunk_bytes").u(3000).str("streamed").raw({0xc3});
    CHECK(std::search(e.header.begin(), e.header.end(), tail.b.begin(), tail.b.end()) != e.header.end());
  }
  const DecodeResult r = decode(std::vector<Bytes>{e.frame(0)}, DecodeOptions::permissive());
  REQUIRE_MESSAGE(r.ok(), r.error.message);
  const BufferDesc& o = *std::get<Result>(*r.message).output;
  CHECK(o.streamed);
  CHECK_FALSE(o.is_inline());
  CHECK(o.data == nullptr);
  CHECK(o.payload == nullptr);
  CHECK(o.chunks == s.result.output->chunks);
  CHECK(encode(*r.message).header == e.header);
  CHECK(json::message_to_json(*r.message) == json::message_to_json(Message(s.result)));
  CHECK(json::inline_pixels(*r.message).empty());

  // shuffled: `streamed` after `filter`
  Result shuffled = s.result;
  shuffled.output->shuffle = true;
  const Encoded es = encode(Message(shuffled));
  Mp order;
  order.str("filter").str("shuffle").str("streamed").raw({0xc3});
  CHECK(std::search(es.header.begin(), es.header.end(), order.b.begin(), order.b.end()) != es.header.end());

  auto code = [&](const Result& res, std::vector<Blob> payloads, DecodeOptions o = DecodeOptions::permissive()) {
    const Encoded enc = encode(Message(res));
    std::vector<Blob> frames{enc.header};
    for (auto& p : payloads) frames.push_back(p);
    auto rr = decode_blobs(frames, o);
    return rr.ok() ? ErrorCode{} : rr.error.code;
  };
  // a payload frame for a streamed output: one too many
  CHECK(code(s.result, {s.chunks[0]}) == ErrorCode::MALFORMED);
  // not negotiated
  DecodeOptions no = DecodeOptions::permissive();
  no.allow_streamed_output = false;
  CHECK(code(s.result, {}, no) == ErrorCode::BAD_VALUE);
  // without chunks (one frame)
  Result one = s.result;
  one.output->chunks.clear();
  one.output->chunk_bytes = 0;
  CHECK(code(one, {}) == ErrorCode::BAD_VALUE);
  // `streamed: false` is not streamed: the payload frame is back (decode-only: written only when true)
  {
    Result plain = s.result;
    plain.output->streamed = false;
    Blob all;
    for (auto& c : s.chunks) all.insert(all.end(), c.begin(), c.end());
    Encoded pe = encode(Message(plain));
    Blob h = pe.header;
    Mp f;
    f.str("streamed").raw({0xc2});
    Mp before;
    before.str("chunk_bytes").u(3000);
    auto at = std::search(h.begin(), h.end(), before.b.begin(), before.b.end());
    REQUIRE(at != h.end());
    h.insert(at + before.b.size(), f.b.begin(), f.b.end());
    // the output map grows by one entry: its fixmap byte precedes "name"
    Mp name;
    name.str("name").str("output");
    auto m = std::search(h.begin(), h.end(), name.b.begin(), name.b.end());
    REQUIRE(m != h.begin());
    *(m - 1) = static_cast<uint8_t>(*(m - 1) + 1);
    auto rr = decode_blobs({h, all}, DecodeOptions::permissive());
    REQUIRE_MESSAGE(rr.ok(), rr.error.message);
    CHECK_FALSE(std::get<Result>(*rr.message).output->streamed);
    CHECK(Blob(std::get<Result>(*rr.message).output->data, std::get<Result>(*rr.message).output->data + 8192) == s.px);
    // not a bool
    Blob h2 = h;
    auto b = std::search(h2.begin(), h2.end(), f.b.begin(), f.b.end());
    *(b + f.b.size() - 1) = 0x01;
    CHECK(code_of({h2, all}) == ErrorCode::WRONG_TYPE);
  }
  // a RESULT output streamed where only streamed_frames was negotiated (the other direction): BAD_VALUE
  DecodeOptions frames_only = DecodeOptions::permissive();
  frames_only.allow_streamed_output = false;
  CHECK(code(s.result, {}, frames_only) == ErrorCode::BAD_VALUE);
}

// Section 6.3.5: a FRAME whose `albedo` (2x2 rgba8, one lz4 chunk) came ahead in a PART, followed by an inline
// raw `depth`, which keeps its payload frame.
namespace {
struct StreamedFrameMsg {
  Blob px, depth, z;
  Frame frame;
  StreamedFrameMsg() {
    frame = basic_frame(px);
    BufferDesc& b = frame.buffers[0];
    z = compress(Compression::lz4, px.data(), px.size());
    b.compression = Compression::lz4;
    b.chunks = {z.size()};
    b.chunk_bytes = stream_chunk_bytes_for(px.size());
    b.streamed = true;
    b.data = b.payload = nullptr;
    b.size = b.payload_size = 0;
    BufferDesc d;
    d.name = "depth";
    d.format = Format::r32f;
    d.width = 2;
    d.height = 2;
    d.stride = 8;
    depth.assign(16, 0x3f);
    d.set_pixels(depth.data(), depth.size());
    frame.buffers.push_back(d);
  }
};
}  // namespace

TEST_CASE("protocol: a streamed FRAME buffer (section 6.3.5) has no payload frame, where streamed_frames was "
          "negotiated") {
  StreamedFrameMsg s;
  const Encoded e = encode(Message(s.frame));
  REQUIRE(e.frame_count() == 2);  // the header and depth's payload: none for the streamed albedo
  CHECK(e.frame(1).data == s.depth.data());
  Mp tail;
  tail.str("chunk_bytes").u(1u << 20).str("streamed").raw({0xc3});
  CHECK(std::search(e.header.begin(), e.header.end(), tail.b.begin(), tail.b.end()) != e.header.end());

  DecodeOptions o = DecodeOptions::permissive();
  o.allow_streamed_output = false;  // the engine's direction needs only its own capability
  const DecodeResult r = decode(std::vector<Bytes>{e.frame(0), e.frame(1)}, o);
  REQUIRE_MESSAGE(r.ok(), r.error.message);
  const Frame& f = std::get<Frame>(*r.message);
  REQUIRE(f.buffers.size() == 2);
  CHECK(f.buffers[0].streamed);
  CHECK_FALSE(f.buffers[0].is_inline());
  CHECK(f.buffers[0].data == nullptr);
  CHECK(f.buffers[0].chunks == std::vector<uint64_t>{s.z.size()});
  CHECK(Blob(f.buffers[1].data, f.buffers[1].data + f.buffers[1].size) == s.depth);
  CHECK(encode(*r.message).header == e.header);
  CHECK(json::message_to_json(*r.message) == json::message_to_json(Message(s.frame)));
  REQUIRE(json::inline_pixels(*r.message).size() == 1);  // depth only
  {  // the JSON mapping takes a streamed FRAME buffer without a payload
    std::vector<std::vector<uint8_t>> storage;
    const Message back = json::message_from_json(json::message_to_json(*r.message), {s.depth}, storage);
    CHECK(encode(back).header == e.header);
  }
  // the chunk itself travels in a PART of buffer "albedo" (decoded with the same options)
  Part p;
  p.session = s.frame.session;
  p.frame = s.frame.frame;
  p.buffer = "albedo";
  p.payload = s.z.data();
  p.payload_size = s.z.size();
  const Encoded pe = encode(Message(p));
  const DecodeResult pr = decode(std::vector<Bytes>{pe.frame(0), pe.frame(1)}, o);
  REQUIRE_MESSAGE(pr.ok(), pr.error.message);
  CHECK(std::get<Part>(*pr.message).buffer == "albedo");

  auto code = [&](const Frame& fr, std::vector<Blob> payloads, const DecodeOptions& opts) {
    std::vector<Blob> frames{encode(Message(fr)).header};
    for (auto& b : payloads) frames.push_back(b);
    auto rr = decode_blobs(frames, opts);
    return rr.ok() ? ErrorCode{} : rr.error.code;
  };
  // not negotiated (streamed_output alone is the other direction)
  DecodeOptions no = DecodeOptions::permissive();
  no.allow_streamed_frames = false;
  CHECK(code(s.frame, {s.depth}, no) == ErrorCode::BAD_VALUE);
  // a payload frame for it too: one too many
  CHECK(code(s.frame, {s.z, s.depth}, o) == ErrorCode::MALFORMED);
  // without chunks
  Frame one = s.frame;
  one.buffers[0].chunks.clear();
  one.buffers[0].chunk_bytes = 0;
  CHECK(code(one, {s.depth}, o) == ErrorCode::BAD_VALUE);
  // uncompressed: no chunk table goes out with a raw buffer, so `streamed` comes without one
  Frame raw = s.frame;
  raw.buffers[0].compression = Compression::none;
  CHECK(code(raw, {s.depth}, o) == ErrorCode::BAD_VALUE);
}

TEST_CASE("protocol: stream_chunk_bytes_for: 1 MiB, more above 256 MiB, in 64 KiB steps") {
  constexpr uint64_t MiB = 1u << 20;
  CHECK(stream_chunk_bytes_for(0) == MiB);
  CHECK(stream_chunk_bytes_for(1) == MiB);
  CHECK(stream_chunk_bytes_for(MiB) == MiB);
  CHECK(stream_chunk_bytes_for(3 * MiB + 1) == MiB);
  CHECK(stream_chunk_bytes_for(256 * MiB) == MiB);
  CHECK(stream_chunk_bytes_for(256 * MiB + 1) == MiB + 64 * 1024);
  CHECK(stream_chunk_bytes_for(1024 * MiB) == 4 * MiB);
  for (uint64_t size : {uint64_t(5), 7 * MiB + 3, 300 * MiB + 17, 1024 * MiB}) {
    const uint64_t per = stream_chunk_bytes_for(size);
    CHECK(per % (64 * 1024) == 0);
    CHECK((size + per - 1) / per <= kMaxChunks);
  }
}

TEST_CASE("protocol: a chunk decompressed ahead: peek_frame tells its codec and size, inflate_chunk checks it") {
  Blob px(5000);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 13 / 7);
  for (Compression c : {Compression::lz4, Compression::zstd}) {
    CAPTURE(std::string(compression_name(c)));
    const Blob z = compress(c, px.data(), px.size());
    auto peek = peek_frame(z.data(), z.size());
    REQUIRE(peek);
    CHECK(peek->codec == c);
    CHECK(peek->content_size == px.size());
    Blob out(px.size());
    CHECK(inflate_chunk(c, z.data(), z.size(), out.data(), out.size()) == "");
    CHECK(out == px);
    // from byte planes (section 6.3.3)
    const Blob zs = compress(c, px.data(), px.size(), 0, 4);
    Blob back(px.size());
    CHECK(inflate_chunk(c, zs.data(), zs.size(), back.data(), back.size(), 4) == "");
    CHECK(back == px);
    // another size or codec than the table says: why, before decompressing
    CHECK(inflate_chunk(c, z.data(), z.size(), out.data(), out.size() - 1).find("announces 5000 bytes, the chunk "
                                                                                "holds 4999") != std::string::npos);
    const Compression other = c == Compression::lz4 ? Compression::zstd : Compression::lz4;
    CHECK_FALSE(inflate_chunk(other, z.data(), z.size(), out.data(), out.size()).empty());
    const Blob cut(z.begin(), z.end() - 2);
    CHECK_FALSE(inflate_chunk(c, cut.data(), cut.size(), out.data(), out.size()).empty());
  }
  const Blob junk{1, 2, 3, 4, 5, 6};
  CHECK_FALSE(peek_frame(junk.data(), junk.size()));
  CHECK_FALSE(peek_frame(junk.data(), 2));
  CHECK_FALSE(peek_frame(nullptr, 0));
}

TEST_CASE("protocol: a stricter receiver limit on buffer size") {
  Blob px;
  Frame f = basic_frame(px);
  Encoded e = encode(Message(f));
  DecodeOptions o = DecodeOptions::permissive();
  o.max_buffer_bytes = 15;
  CHECK(decode(std::vector<Bytes>{e.frame(0), e.frame(1)}, o).error.code == ErrorCode::LIMIT_EXCEEDED);
  o.max_buffer_bytes = 16;
  CHECK(decode(std::vector<Bytes>{e.frame(0), e.frame(1)}, o).ok());
}

TEST_CASE("protocol: tables") {
  CHECK(static_cast<int>(ErrorCode::MALFORMED) == 1);
  CHECK(static_cast<int>(ErrorCode::INTERNAL) == 14);
  CHECK(static_cast<int>(ErrorCode::UNSUPPORTED) == 15);
  for (uint64_t c = 1; c <= 15; ++c) {
    auto code = static_cast<ErrorCode>(c);
    CHECK(error_code_from_name(error_name(code)) == code);
  }
  CHECK(error_name(static_cast<ErrorCode>(16)).empty());
  CHECK(bytes_per_pixel(Format::rgba32f) == 16);
  CHECK(format_info(Format::rg16f).channels == 2);
  CHECK(format_from_name("r16u") == Format::r16u);
  CHECK_FALSE(format_from_name("rgb565").has_value());
  CHECK(is_valid_buffer_name("transparency_and_composition_mask"));
  CHECK(is_valid_buffer_name("x_a"));
  CHECK_FALSE(is_valid_buffer_name("x_"));
  CHECK_FALSE(is_valid_buffer_name("x_A"));
  CHECK_FALSE(is_valid_buffer_name("x_" + std::string(62, 'a')));
  CHECK(buffer_names().size() == 26);
}

namespace {

// A smooth 64x32 gradient: what a rendered image looks like to the codec (section 6.3.1).
constexpr uint32_t kLossyW = 64, kLossyH = 32;
Blob lossy_test_pixels() {
  Blob px(size_t(kLossyW) * kLossyH * 4);
  for (uint32_t y = 0; y < kLossyH; ++y)
    for (uint32_t x = 0; x < kLossyW; ++x) {
      uint8_t* p = &px[(size_t(y) * kLossyW + x) * 4];
      p[0] = uint8_t(x * 4), p[1] = uint8_t(y * 8), p[2] = uint8_t(128), p[3] = 255;
    }
  return px;
}

// A RESULT whose output is `payload` compressed with `codec` (a lossy image codec), encoded: its two frames.
Encoded lossy_result(Compression codec, const Blob& payload) {
  Result r;
  r.session = 7, r.frame = 1, r.status = ResultStatus::ok;
  BufferDesc out;
  out.name = "output", out.format = Format::rgba8_srgb, out.width = kLossyW, out.height = kLossyH;
  out.stride = kLossyW * 4;
  out.compression = codec;
  out.payload = payload.data(), out.payload_size = payload.size();
  r.output = out;
  return encode(Message(r));
}

// The largest per-channel difference between the decoded output and `px`; checks alpha is opaque.
int worst_lossy_error(const DecodeResult& d, const Blob& px) {
  const BufferDesc& got = *std::get<Result>(*d.message).output;
  REQUIRE(got.size == px.size());
  int worst = 0;
  for (size_t i = 0; i < px.size(); ++i) worst = std::max(worst, std::abs(int(got.data[i]) - int(px[i])));
  CHECK(got.data[3] == 255);
  return worst;
}

}  // namespace

TEST_CASE("protocol: a JPEG RESULT image decodes to its pixels within JPEG's error, only where negotiated") {
  const Blob px = lossy_test_pixels();
  const Blob jpeg = encode_jpeg(px.data(), kLossyW, kLossyH, kLossyW * 4, 90);
  const Encoded e = lossy_result(Compression::jpeg, jpeg);
  const std::vector<Bytes> frames{e.frame(0), e.frame(1)};
  DecodeOptions o;
  CHECK(decode(frames, o).error.code == ErrorCode::BAD_VALUE);  // not negotiated
  o.allow_jpeg = true;
  const DecodeResult d = decode(frames, o);
  REQUIRE_MESSAGE(d.ok(), d.error.message);
  CHECK(worst_lossy_error(d, px) <= 8);
  SUBCASE("a truncated JPEG is PAYLOAD_MISMATCH, not grey pixels") {
    const Blob cut(jpeg.begin(), jpeg.begin() + long(jpeg.size() / 2));
    CHECK(decode(std::vector<Bytes>{e.frame(0), Bytes(cut.data(), cut.size())}, o).error.code ==
          ErrorCode::PAYLOAD_MISMATCH);
  }
}

TEST_CASE("protocol: a WebP RESULT image decodes to its pixels within WebP's error, only where negotiated") {
  const Blob px = lossy_test_pixels();
  const Blob webp = encode_webp(px.data(), kLossyW, kLossyH, kLossyW * 4, 90);
  CHECK(webp.size() < px.size() / 4);
  const Encoded e = lossy_result(Compression::webp, webp);
  const std::vector<Bytes> frames{e.frame(0), e.frame(1)};
  DecodeOptions o;
  o.allow_jpeg = true;  // JPEG negotiated is not WebP negotiated
  CHECK(decode(frames, o).error.code == ErrorCode::BAD_VALUE);
  o.allow_webp = true;
  const DecodeResult d = decode(frames, o);
  REQUIRE_MESSAGE(d.ok(), d.error.message);
  CHECK(worst_lossy_error(d, px) <= 12);  // 4:2:0 chroma on a gradient
  SUBCASE("a truncated WebP is PAYLOAD_MISMATCH") {
    const Blob cut(webp.begin(), webp.begin() + long(webp.size() / 2));
    CHECK(decode(std::vector<Bytes>{e.frame(0), Bytes(cut.data(), cut.size())}, o).error.code ==
          ErrorCode::PAYLOAD_MISMATCH);
  }
  SUBCASE("a WebP of another size is PAYLOAD_MISMATCH before any pixel is decoded") {
    const Blob small = encode_webp(px.data(), kLossyW / 2, kLossyH, kLossyW * 4, 90);
    const DecodeResult bad = decode(std::vector<Bytes>{e.frame(0), Bytes(small.data(), small.size())}, o);
    CHECK(bad.error.code == ErrorCode::PAYLOAD_MISMATCH);
    CHECK(bad.error.message.find("32x32") != std::string::npos);
  }
}
