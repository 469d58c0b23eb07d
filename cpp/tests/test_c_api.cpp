// The C ABI contract (nrb.h): versioned structs, status codes instead of exceptions, last-error text, ownership.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "nrb/nrb.h"
#include "test_renderer.hpp"

namespace {

struct Fixture {
  nrb_buffer_spec specs[1] = {{"depth", NRB_FORMAT_R32F}};
  nrb_client_config cfg;
  Fixture(const char* endpoint = "tcp://127.0.0.1:1") {
    nrb_client_config_init(&cfg);
    cfg.endpoint = endpoint;
    cfg.render_width = 8;
    cfg.render_height = 4;
    cfg.buffers = specs;
    cfg.buffer_count = 1;
  }
};

nrb_buffer_desc depth_desc(const void* data) {
  nrb_buffer_desc d{};
  d.struct_size = sizeof d;
  d.struct_version = NRB_BUFFER_DESC_VERSION;
  d.name = "depth";
  d.format = NRB_FORMAT_R32F;
  d.width = 8;
  d.height = 4;
  d.data = data;
  return d;
}

}  // namespace

TEST_CASE("c api: version and format helpers") {
  CHECK(nrb_get_version() == NRB_VERSION);
  CHECK(std::string(nrb_get_version_string()) == "0.1.0");
  CHECK(nrb_format_bytes_per_pixel(NRB_FORMAT_RGBA16F) == 8);
  CHECK(nrb_format_bytes_per_pixel(999) == 0);
  CHECK(std::string(nrb_format_name(NRB_FORMAT_R16U)) == "r16u");
  CHECK(nrb_format_name(0) == nullptr);
  CHECK(std::string(nrb_status_name(NRB_NO_RESULT)) == "NRB_NO_RESULT");
}

TEST_CASE("c api: create rejects missing or unversioned configs with a reason") {
  nrb_client* c = reinterpret_cast<nrb_client*>(0x1);
  CHECK(nrb_client_create(nullptr, &c) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(c == nullptr);
  CHECK(std::string(nrb_last_error(nullptr)).find("NULL") != std::string::npos);

  Fixture f;
  f.cfg.struct_version = 0;
  CHECK(nrb_client_create(&f.cfg, &c) == NRB_ERROR_UNSUPPORTED_VERSION);
  f.cfg.struct_version = NRB_CLIENT_CONFIG_VERSION + 1;
  CHECK(nrb_client_create(&f.cfg, &c) == NRB_ERROR_UNSUPPORTED_VERSION);
  f.cfg.struct_version = NRB_CLIENT_CONFIG_VERSION;
  f.cfg.struct_size = 8;
  CHECK(nrb_client_create(&f.cfg, &c) == NRB_ERROR_UNSUPPORTED_VERSION);

  Fixture g;
  g.cfg.render_width = 0;
  CHECK(nrb_client_create(&g.cfg, &c) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(nrb_last_error(nullptr)).find("render size") != std::string::npos);

  Fixture h;
  h.specs[0].name = "not a buffer";
  CHECK(nrb_client_create(&h.cfg, &c) == NRB_ERROR_INVALID_ARGUMENT);
  Fixture k;
  k.cfg.curve_server_public_key = "short";
  CHECK(nrb_client_create(&k.cfg, &c) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(c == nullptr);
}

TEST_CASE("c api: every entry point reports misuse as a status, never a crash") {
  Fixture f;
  nrb_client* c = nullptr;
  REQUIRE(nrb_client_create(&f.cfg, &c) == NRB_OK);
  REQUIRE(c != nullptr);
  float depth[32] = {};
  nrb_buffer_desc d = depth_desc(depth);

  CHECK(nrb_frame_tag_buffer(c, &d) == NRB_ERROR_INVALID_STATE);  // no frame begun
  CHECK(std::string(nrb_last_error(c)).find("begin") != std::string::npos);
  CHECK(nrb_frame_submit(c) == NRB_ERROR_INVALID_STATE);
  CHECK(nrb_frame_begin(nullptr, nullptr, nullptr) == NRB_ERROR_INVALID_ARGUMENT);

  uint64_t id = 0;
  REQUIRE(nrb_frame_begin(c, nullptr, &id) == NRB_OK);
  CHECK(id == 1);
  CHECK(nrb_frame_tag_buffer(c, nullptr) == NRB_ERROR_INVALID_ARGUMENT);
  nrb_buffer_desc bad = d;
  bad.name = "output";
  CHECK(nrb_frame_tag_buffer(c, &bad) == NRB_ERROR_INVALID_ARGUMENT);
  bad = d;
  bad.format = 77;
  CHECK(nrb_frame_tag_buffer(c, &bad) == NRB_ERROR_INVALID_ARGUMENT);
  bad = d;
  bad.stride = 3;  // narrower than a row
  CHECK(nrb_frame_tag_buffer(c, &bad) == NRB_ERROR_INVALID_ARGUMENT);
  bad = d;
  bad.width = 20000;
  CHECK(nrb_frame_tag_buffer(c, &bad) == NRB_ERROR_LIMIT_EXCEEDED);
  bad = d;
  bad.struct_size = 4;
  CHECK(nrb_frame_tag_buffer(c, &bad) == NRB_ERROR_UNSUPPORTED_VERSION);
  bad = d;
  bad.data = nullptr;
  CHECK(nrb_frame_tag_buffer(c, &bad) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_frame_tag_buffer(c, &d) == NRB_OK);

  void* slot = nullptr;
  uint32_t stride = 0;
  CHECK(nrb_frame_acquire_slot(c, &d, &slot, &stride) == NRB_OK);  // not connected: staging memory, still usable
  CHECK(slot != nullptr);
  CHECK(stride == 32);
  std::memset(slot, 0, stride * 4);

  nrb_camera cam;
  nrb_camera_init(&cam);
  cam.near_plane = 0.1;
  cam.far_plane = INFINITY;
  cam.fov_y = 1.0;
  cam.aspect = 2.0;
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_OK);
  cam.fov_y = 4.0;
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_ERROR_INVALID_ARGUMENT);
  cam.fov_y = 1.0;
  cam.jitter[0] = NAN;
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_ERROR_INVALID_ARGUMENT);

  CHECK(nrb_fire_event(c, "powerup", nullptr, 0, nullptr) == NRB_OK);
  const uint8_t params[] = {0x81, 0xa1, 'x', 0x01};  // {"x": 1}
  uint32_t ids[] = {42};
  nrb_target obj{NRB_SCOPE_OBJECT, ids, 1};
  CHECK(nrb_fire_event(c, "hit", params, sizeof params, &obj) == NRB_OK);
  const uint8_t not_a_map[] = {0x01};
  CHECK(nrb_fire_event(c, "hit", not_a_map, sizeof not_a_map, nullptr) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_fire_event(c, "", nullptr, 0, nullptr) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_fire_event(c, "\xff\xfe", nullptr, 0, nullptr) == NRB_ERROR_INVALID_ARGUMENT);  // not UTF-8
  nrb_target global_with_ids{NRB_SCOPE_GLOBAL, ids, 1};
  CHECK(nrb_fire_event(c, "hit", nullptr, 0, &global_with_ids) == NRB_ERROR_INVALID_ARGUMENT);
  nrb_target object_without_ids{NRB_SCOPE_OBJECT, nullptr, 0};
  CHECK(nrb_set_style(c, "noir", 0.5, 1.0, &object_without_ids) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_set_style(c, "noir", 1.5, 1.0, nullptr) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_set_style(c, "noir", 0.5, 1.0, nullptr) == NRB_OK);
  int live = -1;
  CHECK(nrb_frame_get_live(c, nullptr) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_frame_get_live(nullptr, &live) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_frame_get_live(c, &live) == NRB_OK);
  CHECK(live == 0);  // begun while connecting: it will not be sent
  CHECK(nrb_frame_submit(c) == NRB_OK);
  live = -1;
  CHECK(nrb_frame_get_live(c, &live) == NRB_OK);
  CHECK(live == 0);  // no frame begun
  int sending = -1;
  CHECK(nrb_get_sending(c, nullptr) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_get_sending(nullptr, &sending) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(nrb_get_sending(c, &sending) == NRB_OK);
  CHECK(sending == 0);  // still connecting: a frame begun now would not be sent

  nrb_result r{};
  CHECK(nrb_acquire_result(c, &r) == NRB_ERROR_UNSUPPORTED_VERSION);
  r.struct_size = sizeof r;
  r.struct_version = NRB_RESULT_VERSION;
  CHECK(nrb_acquire_result(c, &r) == NRB_NO_RESULT);
  CHECK(nrb_release_result(c, &r) == NRB_ERROR_NOT_FOUND);

  nrb_stats s{};
  s.struct_size = sizeof s;
  s.struct_version = NRB_STATS_VERSION;
  REQUIRE(nrb_get_stats(c, &s) == NRB_OK);
  CHECK(s.frames_submitted == 1);
  CHECK(s.frames_dropped == 1);
  CHECK(s.events_pending == 3);
  CHECK(s.state == NRB_STATE_CONNECTING);

  int on = -1;
  CHECK(nrb_get_enabled(c, &on) == NRB_OK);
  CHECK(on == 1);
  CHECK(nrb_set_enabled(c, 0) == NRB_OK);
  CHECK(nrb_get_enabled(c, &on) == NRB_OK);
  CHECK(on == 0);
  REQUIRE(nrb_get_stats(c, &s) == NRB_OK);
  CHECK(s.state == NRB_STATE_DISABLED);
  CHECK(s.doorbell_active == 0);

  // A caller built against version 1 of nrb_stats (which ended at `session`) gets its fields and nothing past them.
  struct {
    nrb_stats s;
    uint8_t guard[16];
  } old;
  std::memset(&old, 0xAB, sizeof old);
  const uint32_t v1_size = uint32_t(offsetof(nrb_stats, session) + sizeof(uint64_t));
  old.s.struct_size = v1_size;
  old.s.struct_version = 1;
  REQUIRE(nrb_get_stats(c, &old.s) == NRB_OK);
  CHECK(old.s.struct_size == v1_size);
  CHECK(old.s.frames_submitted == 1);
  CHECK(reinterpret_cast<const uint8_t*>(&old.s)[v1_size] == 0xAB);
  old.s.struct_size = v1_size - 8;  // smaller than any version: refused
  CHECK(nrb_get_stats(c, &old.s) == NRB_ERROR_UNSUPPORTED_VERSION);

  // Version 2 ended at `doorbell_active`; a v2 struct's size (rounded up to its 8-byte alignment) covers the padding
  // where version 3's refusal_code now lies, and that padding stays untouched.
  const uint32_t v2_end = uint32_t(offsetof(nrb_stats, doorbell_active) + sizeof(uint32_t));
  const uint32_t v2_size = (v2_end + 7u) & ~7u;
  std::memset(&old, 0xAB, sizeof old);
  old.s.struct_size = v2_size;
  old.s.struct_version = 2;
  REQUIRE(nrb_get_stats(c, &old.s) == NRB_OK);
  CHECK(old.s.struct_size == v2_size);
  CHECK(old.s.struct_version == 2);
  CHECK(old.s.doorbell_active == 0);
  CHECK(old.s.state == NRB_STATE_DISABLED);
  for (uint32_t i = v2_end; i < v2_size + 16; ++i) CHECK(reinterpret_cast<const uint8_t*>(&old.s)[i] == 0xAB);
  static_assert(NRB_STATS_VERSION == 5, "this test knows versions 1..5");
  CHECK(offsetof(nrb_stats, refusal_code) >= v2_end);
  CHECK(sizeof(nrb_stats::refusal_message) == 256);

  // Version 3 ended at `refusal_message`: version 4's in_flight_limit is not written for a v3 caller.
  const uint32_t v3_end = uint32_t(offsetof(nrb_stats, refusal_message) + sizeof(nrb_stats::refusal_message));
  std::memset(&old, 0xAB, sizeof old);
  old.s.struct_size = v3_end;
  old.s.struct_version = 3;
  REQUIRE(nrb_get_stats(c, &old.s) == NRB_OK);
  CHECK(old.s.struct_version == 3);
  CHECK(offsetof(nrb_stats, in_flight_limit) >= v3_end);
  for (uint32_t i = v3_end; i < uint32_t(sizeof(nrb_stats)); ++i)
    CHECK(reinterpret_cast<const uint8_t*>(&old.s)[i] == 0xAB);
  // Version 4 ended at `in_flight_limit`: version 5's service_ms and link_ms are not written for a v4 caller.
  const uint32_t v4_end = uint32_t(offsetof(nrb_stats, in_flight_limit) + sizeof(uint32_t));
  std::memset(&old, 0xAB, sizeof old);
  old.s.struct_size = v4_end;
  old.s.struct_version = 4;
  REQUIRE(nrb_get_stats(c, &old.s) == NRB_OK);
  CHECK(old.s.in_flight_limit >= 1);
  CHECK(offsetof(nrb_stats, service_ms) >= v4_end);
  for (uint32_t i = v4_end; i < uint32_t(sizeof(nrb_stats)); ++i)
    CHECK(reinterpret_cast<const uint8_t*>(&old.s)[i] == 0xAB);
  nrb_stats now{};
  now.struct_size = sizeof now;
  now.struct_version = NRB_STATS_VERSION;
  REQUIRE(nrb_get_stats(c, &now) == NRB_OK);
  CHECK(now.in_flight_limit >= 1);
  CHECK(now.service_ms == 0.0);  // no answer yet
  CHECK(now.link_ms == 0.0);

  CHECK(nrb_client_retry(c) == NRB_OK);  // not refused: a no-op
  CHECK(nrb_client_retry(nullptr) == NRB_ERROR_INVALID_ARGUMENT);

  nrb_client_destroy(c);
  nrb_client_destroy(nullptr);
}

TEST_CASE("c api: an acquired result stays valid until released, even after newer results arrive") {
  nrb::test::TestRenderer r;
  Fixture f(r.endpoint().c_str());
  std::string endpoint = r.endpoint();
  f.cfg.endpoint = endpoint.c_str();
  f.cfg.transport = NRB_TRANSPORT_INLINE;
  f.cfg.deadline_ms = 1000;
  nrb_client* c = nullptr;
  REQUIRE(nrb_client_create(&f.cfg, &c) == NRB_OK);
  nrb_result held{};
  held.struct_size = sizeof held;
  held.struct_version = NRB_RESULT_VERSION;
  bool have = false;
  std::vector<float> first;
  for (int i = 0; i < 400 && !have; ++i) {
    std::vector<float> depth(32, float(i));
    nrb_buffer_desc d = depth_desc(depth.data());
    REQUIRE(nrb_frame_begin(c, nullptr, nullptr) == NRB_OK);
    REQUIRE(nrb_frame_tag_buffer(c, &d) == NRB_OK);
    REQUIRE(nrb_frame_submit(c) == NRB_OK);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (nrb_acquire_result(c, &held) == NRB_OK) {
      have = true;
      first.assign(static_cast<const float*>(held.pixels), static_cast<const float*>(held.pixels) + 32);
    }
  }
  REQUIRE(have);
  CHECK(held.format == NRB_FORMAT_R32F);
  CHECK(held.width == 8);
  // More frames and results; the held pixels do not change.
  for (int i = 0; i < 20; ++i) {
    std::vector<float> depth(32, 1000.0f + i);
    nrb_buffer_desc d = depth_desc(depth.data());
    nrb_frame_begin(c, nullptr, nullptr);
    nrb_frame_tag_buffer(c, &d);
    nrb_frame_submit(c);
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  CHECK(std::memcmp(held.pixels, first.data(), 32 * sizeof(float)) == 0);
  CHECK(nrb_release_result(c, &held) == NRB_OK);
  CHECK(nrb_release_result(c, &held) == NRB_ERROR_NOT_FOUND);
  nrb_client_destroy(c);  // also frees anything still held
}

TEST_CASE("c api: a refusal's message is cut to 255 bytes without splitting a UTF-8 sequence") {
  // The renderer's message: "buffers: renderer 'test' needs buffers ['x_aé...é'], which ...", long enough to be
  // cut, with a two-byte character straddling byte 255.
  const std::string prefix = "buffers: renderer 'test' needs buffers ['";
  std::string name = "x_";
  if ((prefix.size() + name.size()) % 2 == 1) name += "a";  // so that byte 255 is the second byte of an "é"
  for (int i = 0; i < 150; ++i) name += "\xc3\xa9";
  const std::string full = prefix + name + "'], which the engine does not offer";
  REQUIRE(full.size() > 256);
  REQUIRE((static_cast<unsigned char>(full[255]) & 0xC0) == 0x80);

  nrb::test::TestRenderer::Options o;
  o.require = {name};
  nrb::test::TestRenderer r(o);
  const std::string endpoint = r.endpoint();
  Fixture f(endpoint.c_str());
  f.cfg.reconnect_backoff_min_ms = 10;
  nrb_client* c = nullptr;
  REQUIRE(nrb_client_create(&f.cfg, &c) == NRB_OK);
  nrb_stats s{};
  s.struct_size = sizeof s;
  s.struct_version = NRB_STATS_VERSION;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(nrb_get_stats(c, &s) == NRB_OK);
    if (s.state == NRB_STATE_REFUSED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  REQUIRE(s.state == NRB_STATE_REFUSED);
  CHECK(s.refusal_code == 6);
  const std::string got(s.refusal_message);
  CHECK(got.size() == 254);  // 255 would end inside the "é"
  CHECK(full.compare(0, got.size(), got) == 0);
  CHECK(std::string(nrb_last_error(c)).find(full) != std::string::npos);  // the whole text there
  nrb_client_destroy(c);
}

TEST_CASE("c api: a version-1 client config (built before renderer and lossy_quality) still creates a client") {
  // A plugin compiled against the version-1 header passes a shorter struct: the library must not read past it, and
  // its client asks for no renderer and exact images. Garbage after the v1 fields proves nothing is read there.
  struct V1 {
    nrb_client_config cfg;
  } big;
  Fixture f;
  big.cfg = f.cfg;
  std::memset(reinterpret_cast<char*>(&big.cfg) + offsetof(nrb_client_config, renderer), 0xAB,
              sizeof(nrb_client_config) - offsetof(nrb_client_config, renderer));
  big.cfg.struct_version = 1;
  big.cfg.struct_size = uint32_t(offsetof(nrb_client_config, renderer));
  nrb_client* c = nullptr;
  REQUIRE(nrb_client_create(&big.cfg, &c) == NRB_OK);
  nrb_client_destroy(c);
  // Version 2 checks its new fields.
  Fixture g;
  g.cfg.lossy_quality = 101;
  CHECK(nrb_client_create(&g.cfg, &c) == NRB_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(nrb_last_error(nullptr)).find("lossy_quality") != std::string::npos);
  Fixture h;
  h.cfg.renderer = "neural";
  h.cfg.lossy_quality = 90;
  REQUIRE(nrb_client_create(&h.cfg, &c) == NRB_OK);
  nrb_client_destroy(c);
}
