// Remote-link defaults (nrb.h nrb_link): the rule that tells a remote endpoint from a local one, the pixel
// conversions behind the compact set, and a client that sends the compact set at half the output size to a real
// (test) renderer when its link is remote, while a local one sends what the engine tagged.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client_options.hpp"
#include "io_thread.hpp"
#include "link_defaults.hpp"
#include "nrb/nrb.h"
#include "nrb/nrb.hpp"
#include "test_renderer.hpp"

using nrb::detail::endpoint_is_local;
using nrb::detail::float_to_half;
using nrb::detail::half_to_float;
namespace wire = nrb::wire;

namespace {

// An IPv4 address of this host's interfaces other than loopback, "" when it has none.
std::string own_non_loopback_address() {
  ifaddrs* list = nullptr;
  std::string found;
  if (getifaddrs(&list) != 0) return found;
  for (ifaddrs* a = list; a && found.empty(); a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    found = text;
  }
  freeifaddrs(list);
  return found;
}

// bridge.renderer's _oct_decode: octahedral (x, y) back to a unit normal.
void oct_decode(float x, float y, float n[3]) {
  float z = 1.0f - std::fabs(x) - std::fabs(y);
  const float t = std::max(-z, 0.0f);
  x += x >= 0.0f ? -t : t;
  y += y >= 0.0f ? -t : t;
  const float len = std::sqrt(x * x + y * y + z * z);
  n[0] = x / len, n[1] = y / len, n[2] = z / len;
}

}  // namespace

TEST_CASE("link rule: ipc, loopback and this host's own addresses are local; other hosts are remote") {
  CHECK(endpoint_is_local("ipc:///tmp/nrb.sock"));
  CHECK(endpoint_is_local("inproc://x"));
  CHECK(endpoint_is_local("tcp://127.0.0.1:5555"));
  CHECK(endpoint_is_local("tcp://127.8.9.10:5555"));
  CHECK(endpoint_is_local("tcp://localhost:5555"));
  CHECK(endpoint_is_local("tcp://LOCALHOST:5555"));
  CHECK(endpoint_is_local("tcp://[::1]:5555"));
  CHECK(endpoint_is_local("tcp://0.0.0.0:5555"));
  CHECK(endpoint_is_local("tcp://eth0;127.0.0.1:5555"));  // ZeroMQ's source;destination form
  const std::string own = own_non_loopback_address();
  if (!own.empty()) CHECK(endpoint_is_local("tcp://" + own + ":5555"));
  CHECK_FALSE(endpoint_is_local("tcp://203.0.113.7:5555"));  // TEST-NET-3: never this host's
  CHECK_FALSE(endpoint_is_local("tcp://[2001:db8::1]:5555"));
  CHECK_FALSE(endpoint_is_local("tcp://gpu-box.studio.example:5555"));  // a name: no DNS, remote
  CHECK_FALSE(endpoint_is_local("tcp://127.0.0.1.example:5555"));

  nrb_link l = NRB_LINK_AUTO;
  CHECK(nrb_endpoint_link("tcp://203.0.113.7:5555", &l) == NRB_OK);
  CHECK(l == NRB_LINK_REMOTE);
  CHECK(nrb_endpoint_link("tcp://127.0.0.1:5555", &l) == NRB_OK);
  CHECK(l == NRB_LINK_LOCAL);
  CHECK(nrb_endpoint_link(nullptr, &l) == NRB_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("half floats: every half survives the round trip and floats round to nearest even") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(float_to_half(f) == h);
  }
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(1e6f) == 0x7c00);
  CHECK(float_to_half(-1e6f) == 0xfc00);
  CHECK(std::isnan(half_to_float(float_to_half(NAN))));
  CHECK(float_to_half(1.0f + 1.0f / 2048.0f) == 0x3c00);  // halfway between 1 and the next half: even wins
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);   // the smallest subnormal
}

TEST_CASE("compact conversions: octahedral normals within a few thousandths, depth as half, nearest resampling") {
  constexpr uint32_t w = 64, h = 32;
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> normals(w * h * 4);
  for (uint32_t i = 0; i < w * h; ++i) {
    float x = g(rng), y = g(rng), z = g(rng);
    const float len = std::sqrt(x * x + y * y + z * z);
    normals[4 * i] = x / len, normals[4 * i + 1] = y / len, normals[4 * i + 2] = z / len, normals[4 * i + 3] = 0;
  }
  std::vector<uint8_t> oct(w * h * 4);
  nrb::detail::convert_pixels(reinterpret_cast<const uint8_t*>(normals.data()), w * 16, wire::Format::rgba32f, w, h,
                              oct.data(), wire::Format::rg16f, w, h);
  float worst = 0.0f;
  for (uint32_t i = 0; i < w * h; ++i) {
    uint16_t hx, hy;
    std::memcpy(&hx, &oct[4 * i], 2);
    std::memcpy(&hy, &oct[4 * i + 2], 2);
    float n[3];
    oct_decode(half_to_float(hx), half_to_float(hy), n);
    const float dot = n[0] * normals[4 * i] + n[1] * normals[4 * i + 1] + n[2] * normals[4 * i + 2];
    worst = std::max(worst, std::acos(std::min(dot, 1.0f)));
  }
  CHECK(worst < 0.003f);  // radians: rg16f keeps 11 bits per coordinate

  // depth r32f -> r16f, and a 2x nearest downsample: each output pixel is the source's top-left of its 2x2
  std::vector<float> depth(w * h);
  for (uint32_t i = 0; i < w * h; ++i) depth[i] = static_cast<float>(i) / (w * h);
  std::vector<uint8_t> half(w / 2 * h / 2 * 2);
  nrb::detail::convert_pixels(reinterpret_cast<const uint8_t*>(depth.data()), w * 4, wire::Format::r32f, w, h,
                              half.data(), wire::Format::r16f, w / 2, h / 2);
  for (uint32_t y = 0; y < h / 2; ++y)
    for (uint32_t x = 0; x < w / 2; ++x) {
      uint16_t v;
      std::memcpy(&v, &half[2 * (y * w / 2 + x)], 2);
      REQUIRE(v == float_to_half(depth[2 * y * w + 2 * x]));
    }
  CHECK_THROWS_AS(nrb::detail::convert_pixels(half.data(), w, wire::Format::r16f, w / 2, h / 2, half.data(),
                                              wire::Format::r32f, w / 2, h / 2),
                  std::invalid_argument);
}

TEST_CASE("link defaults: a remote link halves the render size and offers the compact set unless told otherwise") {
  auto opts = [](const char* endpoint) {
    nrb::detail::ClientOptions o;
    o.endpoint = endpoint;
    o.output_size = {1920, 1080};
    o.buffers = {{"hudless_color", wire::Format::rgba8}, {"normals", wire::Format::rgba16f},
                 {"depth", wire::Format::r32f}, {"material_id", wire::Format::r16u}};
    return o;
  };
  auto remote = opts("tcp://203.0.113.7:5555");
  remote.resolve_link();
  remote.resolve_link();  // idempotent
  CHECK(remote.remote);
  CHECK(remote.render_size.width == 960);
  CHECK(remote.render_size.height == 540);
  REQUIRE(remote.buffers.size() == 4);
  CHECK(remote.buffers[1].name == "normals_oct");
  CHECK(remote.buffers[1].format == wire::Format::rg16f);
  CHECK(remote.buffers[2].format == wire::Format::r16f);
  CHECK(remote.buffers[3].format == wire::Format::r16u);
  CHECK(remote.conversions.size() == 2);
  CHECK(remote.compression == wire::Compression::lz4);

  auto local = opts("tcp://127.0.0.1:5555");
  local.resolve_link();
  CHECK_FALSE(local.remote);
  CHECK(local.render_size.width == 1920);
  CHECK(local.buffers[1].name == "normals");
  CHECK(local.conversions.empty());
  CHECK(local.compression == wire::Compression::none);

  auto pinned = opts("tcp://203.0.113.7:5555");  // the engine's own choices win
  pinned.render_size = {1280, 720};
  pinned.exact_formats = true;
  pinned.raw_frames = true;
  pinned.resolve_link();
  CHECK(pinned.remote);
  CHECK(pinned.render_size.width == 1280);
  CHECK(pinned.buffers[1].name == "normals");
  CHECK(pinned.compression == wire::Compression::none);

  auto strong = opts("tcp://203.0.113.7:5555");
  strong.compression = wire::Compression::zstd;
  strong.resolve_link();
  CHECK(strong.compression == wire::Compression::zstd);

  auto forced = opts("tcp://127.0.0.1:5555");
  forced.link = nrb::detail::LinkMode::remote;
  forced.resolve_link();
  CHECK(forced.remote);
  CHECK(forced.render_size.width == 960);
}

TEST_CASE("link defaults: a remote client sends octahedral normals and half depth at half the output size") {
  using namespace std::chrono_literals;
  constexpr uint32_t OW = 64, OH = 32;
  nrb::test::TestRenderer r;
  for (bool remote : {true, false}) {
    nrb::client_config cfg;
    cfg.endpoint(r.endpoint()).engine("doctest").buffer(NRB_BUFFER_NORMALS, NRB_FORMAT_RGBA16F)
        .buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F).buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8);
    cfg->transport = NRB_TRANSPORT_INLINE;
    cfg->output_width = OW;
    cfg->output_height = OH;
    cfg->link = remote ? NRB_LINK_REMOTE : NRB_LINK_AUTO;  // over loopback, AUTO is local
    cfg->deadline_ms = 2000;
    nrb::client c(cfg);
    const auto link = c.link();
    CHECK(link.link == (remote ? NRB_LINK_REMOTE : NRB_LINK_LOCAL));
    const uint32_t rw = remote ? OW / 2 : OW, rh = remote ? OH / 2 : OH;
    CHECK(link.render_width == rw);
    CHECK(link.render_height == rh);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (c.stats().state != NRB_STATE_CONNECTED && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    REQUIRE(c.stats().state == NRB_STATE_CONNECTED);

    // the engine renders at the output size and writes normals through a slot, depth and colour by copy
    std::vector<uint16_t> normals(OW * OH * 4);
    for (uint32_t i = 0; i < OW * OH; ++i) {
      normals[4 * i] = float_to_half(0.0f), normals[4 * i + 1] = float_to_half(i % 2 ? 0.6f : -0.6f);
      normals[4 * i + 2] = float_to_half(-0.8f), normals[4 * i + 3] = 0;
    }
    std::vector<float> depth(OW * OH, 0.25f);
    std::vector<uint8_t> color(OW * OH * 4, 200);
    const size_t before = r.frame_count();
    c.begin();
    nrb::slot s = c.acquire_slot(NRB_BUFFER_NORMALS, NRB_FORMAT_RGBA16F, OW, OH);
    for (uint32_t y = 0; y < OH; ++y)
      std::memcpy(static_cast<uint8_t*>(s.data) + y * s.stride, &normals[y * OW * 4], OW * 8);
    c.tag_buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F, OW, OH, depth.data());
    c.tag_buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8, OW, OH, color.data());
    nrb_camera cam;
    nrb_camera_init(&cam);
    cam.render_width = OW, cam.render_height = OH, cam.jitter[0] = 0.5;  // the engine's own (output) pixels
    c.set_camera(cam);
    c.submit();
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (r.frame_count() == before && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    REQUIRE(r.frame_count() > before);

    const auto hello = r.hellos().back();
    CHECK(hello.render_size.width == rw);
    CHECK(hello.output_size.width == OW);
    const auto offers = [&](const char* c) {
      return std::find(hello.capabilities.begin(), hello.capabilities.end(), c) != hello.capabilities.end();
    };
    CHECK(offers("lz4") == remote);  // a remote link compresses by default, a local one does not
    const auto frame = r.frames().back();
    REQUIRE(frame.buffers.size() == 3);
    CHECK(frame.buffers[0].name == (remote ? "normals_oct" : "normals"));
    CHECK(frame.buffers[0].format == (remote ? wire::Format::rg16f : wire::Format::rgba16f));
    CHECK(frame.buffers[0].width == rw);
    CHECK(frame.buffers[1].format == (remote ? wire::Format::r16f : wire::Format::r32f));
    CHECK(frame.buffers[2].width == rw);
    REQUIRE(frame.camera.has_value());
    REQUIRE(frame.camera->render_size.has_value());
    CHECK(frame.camera->render_size->width == rw);  // the camera describes the buffers sent
    REQUIRE(frame.camera->jitter.has_value());
    CHECK((*frame.camera->jitter)[0] == doctest::Approx(remote ? 0.25 : 0.5));
    if (remote) {  // the first buffer's pixels: every kept (even) column has y = -0.6, z = -0.8 -> one octahedral pair
      const auto px = r.first_buffers().back();
      REQUIRE(px.size() == size_t(rw) * rh * 4);
      uint16_t hx, hy;
      std::memcpy(&hx, &px[0], 2);
      std::memcpy(&hy, &px[2], 2);
      float n[3];
      oct_decode(half_to_float(hx), half_to_float(hy), n);
      CHECK(n[0] == doctest::Approx(0.0).epsilon(0.003));
      CHECK(n[1] == doctest::Approx(-0.6).epsilon(0.003));
      CHECK(n[2] == doctest::Approx(-0.8).epsilon(0.003));
    }
  }
}

TEST_CASE("link defaults: a config of struct_version 2 keeps its formats on a remote endpoint") {
  nrb_buffer_spec specs[1] = {{"normals", NRB_FORMAT_RGBA16F}};
  nrb_client_config cfg;
  nrb_client_config_init(&cfg);
  cfg.struct_version = 2;
  cfg.struct_size = offsetof(nrb_client_config, link);
  cfg.endpoint = "tcp://203.0.113.7:5555";
  cfg.render_width = 64;
  cfg.render_height = 32;
  cfg.buffers = specs;
  cfg.buffer_count = 1;
  cfg.start_disabled = 1;
  nrb_client* c = nullptr;
  REQUIRE(nrb_client_create(&cfg, &c) == NRB_OK);
  nrb_link l = NRB_LINK_AUTO;
  uint32_t w = 0, h = 0;
  CHECK(nrb_client_get_link(c, &l, &w, &h) == NRB_OK);
  CHECK(l == NRB_LINK_LOCAL);
  CHECK(w == 64);
  nrb_client_destroy(c);

  nrb_client_config_init(&cfg);  // the current version: an unknown codec is refused
  cfg.endpoint = "tcp://203.0.113.7:5555";
  cfg.render_width = 64;
  cfg.render_height = 32;
  cfg.start_disabled = 1;
  cfg.compression = NRB_COMPRESSION_OFF + 1;
  CHECK(nrb_client_create(&cfg, &c) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(nrb_last_error(nullptr)).find("NRB_COMPRESSION_") != std::string::npos);

  nrb_client_config_init(&cfg);  // the current version: render size 0x0 needs an output size
  cfg.endpoint = "tcp://203.0.113.7:5555";
  cfg.start_disabled = 1;
  CHECK(nrb_client_create(&cfg, &c) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(nrb_last_error(nullptr)).find("render size") != std::string::npos);
}

TEST_CASE("compression decision: compressing pays on a slow link when the cores keep up, with its CPU counted twice") {
  // 1920x1080 output from 960x540 compact G-buffers (11.4 MB raw, zstd to 0.30) over 1 Gbit/s: 91 ms of link raw.
  // The chain's CPU for a compressed frame on this 2-core machine was about 70 ms: more than the 64 ms the smaller
  // bytes save one frame at a time, so a lone frame goes raw; overlapped, the cores share it (70 ms counted twice,
  // 70 ms a frame) and the link needs 27 ms for the compressed bytes, both below 91 ms: compress.
  using nrb::detail::compression_pays;
  CHECK_FALSE(compression_pays(70.0, 91.0, 0.30, false, 2.0));
  CHECK(compression_pays(70.0, 91.0, 0.30, true, 2.0));
  // 10 Gbit/s: 9 ms of link raw; compressing costs more than the whole link time either way
  CHECK_FALSE(compression_pays(70.0, 9.1, 0.30, false, 2.0));
  CHECK_FALSE(compression_pays(70.0, 9.1, 0.30, true, 2.0));
  // bytes that do not shrink never pay
  CHECK_FALSE(compression_pays(1.0, 91.0, 1.0, true, 2.0));
  // what the remote bench's engine estimated at 10 Gbit/s with frames chunked and shuffled (29 ms of chain CPU, 17
  // ms of raw link, lz4 to 0.163): the codec's clock alone says compressed wins by 15%, but raw makes more fps
  // there: raw. The same chain on 1 Gbit/s (91 ms raw) wins by far: compress. So does a tenth of the bytes saved on
  // a 10 Mbit/s link (253 ms raw), where the CPU is a millisecond.
  CHECK_FALSE(compression_pays(29.0, 17.0, 0.163, true, 2.0));
  CHECK(compression_pays(29.0, 91.0, 0.163, true, 2.0));
  CHECK(compression_pays(1.0, 253.0, 0.9, false, 2.0));
}

TEST_CASE("link defaults: a remote client compresses its frames unless told NRB_COMPRESSION_OFF") {
  using namespace std::chrono_literals;
  nrb::test::TestRenderer r;
  for (const nrb_compression setting : {nrb_compression(NRB_COMPRESSION_NONE), nrb_compression(NRB_COMPRESSION_OFF)}) {
    nrb::client_config cfg;
    cfg.endpoint(r.endpoint()).engine("doctest").buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8);
    cfg->transport = NRB_TRANSPORT_INLINE;
    cfg->output_width = 64;
    cfg->output_height = 32;
    cfg->link = NRB_LINK_REMOTE;
    cfg->compression = setting;
    cfg->deadline_ms = 2000;
    nrb::client c(cfg);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (c.stats().state != NRB_STATE_CONNECTED && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    REQUIRE(c.stats().state == NRB_STATE_CONNECTED);
    const bool compressing = setting == NRB_COMPRESSION_NONE;
    CHECK(c.stats().compression_active == (compressing ? NRB_COMPRESSION_LZ4 : NRB_COMPRESSION_NONE));
    const auto hello = r.hellos().back();
    CHECK((std::find(hello.capabilities.begin(), hello.capabilities.end(), "lz4") != hello.capabilities.end()) ==
          compressing);

    // the first frame is compressed (libnrb measures the codec before it judges whether compressing pays)
    std::vector<uint8_t> color(32 * 16 * 4, 90);
    const size_t before = r.frame_count();
    c.begin();
    c.tag_buffer(NRB_BUFFER_HUDLESS_COLOR, NRB_FORMAT_RGBA8, 32, 16, color.data());
    c.submit();
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (r.frame_count() == before && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    REQUIRE(r.frame_count() > before);
    const auto frame = r.frames().back();
    REQUIRE(frame.buffers.size() == 1);
    CHECK((frame.buffers[0].compression == wire::Compression::lz4) == compressing);
  }
}
