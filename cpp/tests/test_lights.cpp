// nrb_frame_set_lights (docs/protocol.md 6.1 `x_lights`): the engine hands over its lights as nrb_light structs and
// libnrb checks them as a renderer would, packs the rows and sends them as they are (never resampled like an image,
// also on a remote link's render size), through the C ABI and nrb.hpp against the in-process test renderer.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "nrb/nrb.hpp"
#include "test_renderer.hpp"

using namespace std::chrono_literals;
using nrb::test::TestRenderer;

namespace {

nrb_light point(float x, float y, float z, float r, float g, float b, float range = 0.0f) {
  nrb_light l;
  nrb_light_init(&l);
  l.type = NRB_LIGHT_POINT;
  l.position[0] = x, l.position[1] = y, l.position[2] = z;
  l.color[0] = r, l.color[1] = g, l.color[2] = b;
  l.range = range;
  return l;
}

nrb_light spot() {
  nrb_light l = point(1.0f, 3.0f, 0.0f, 0.77f, 1.54f, 3.52f);
  l.type = NRB_LIGHT_SPOT;
  l.direction[0] = 0.0f, l.direction[1] = -1.0f, l.direction[2] = 0.0f;
  l.inner_cone = 0.2f;
  l.outer_cone = 0.3f;
  return l;
}

nrb_client* offline_client() {  // nobody listens: frames are built and checked, then dropped
  nrb_client_config cfg;
  nrb_client_config_init(&cfg);
  cfg.endpoint = "tcp://127.0.0.1:1";
  cfg.render_width = 8;
  cfg.render_height = 4;
  cfg.start_disabled = 1;
  nrb_client* c = nullptr;
  REQUIRE(nrb_client_create(&cfg, &c) == NRB_OK);
  return c;
}

}  // namespace

TEST_CASE("lights: nrb_light_init gives a versioned point light pointing down") {
  nrb_light l;
  std::memset(&l, 0xff, sizeof l);
  nrb_light_init(&l);
  CHECK(l.struct_size == sizeof(nrb_light));
  CHECK(l.struct_version == NRB_LIGHT_VERSION);
  CHECK(l.type == NRB_LIGHT_POINT);
  CHECK(l.direction[1] == -1.0f);
  CHECK(l.range == 0.0f);
  CHECK(std::string(nrb_buffer_name(29)) == NRB_BUFFER_X_LIGHTS);
}

TEST_CASE("lights: bad lights are refused with the light and field named, and change nothing") {
  nrb_client* c = offline_client();
  CHECK(nrb_frame_set_lights(c, nullptr, 0) == NRB_ERROR_INVALID_STATE);  // no frame begun
  REQUIRE(nrb_frame_begin(c, nullptr, nullptr) == NRB_OK);
  nrb_light ok[2] = {point(0, 1, 0, 1, 1, 1), spot()};
  CHECK(nrb_frame_set_lights(c, ok, 2) == NRB_OK);
  CHECK(nrb_frame_set_lights(c, nullptr, 0) == NRB_OK);
  CHECK(nrb_frame_set_lights(c, nullptr, 1) == NRB_ERROR_INVALID_ARGUMENT);

  struct Case {
    const char* what;
    void (*spoil)(nrb_light&);
  };
  const Case cases[] = {
      {"lights[1].color", [](nrb_light& l) { l.color[2] = -0.5f; }},
      {"lights[1].inner_cone", [](nrb_light& l) { l.inner_cone = 0.5f; }},  // outer (0.3) below inner
      {"lights[1].outer_cone", [](nrb_light& l) { l.outer_cone = 0.0f; }},
      {"lights[1].direction", [](nrb_light& l) { l.direction[1] = -2.0f; }},
      {"lights[1].range", [](nrb_light& l) { l.range = -1.0f; }},
      {"lights[1].type", [](nrb_light& l) { l.type = 7; }},
      {"lights[1].position", [](nrb_light& l) { l.position[0] = NAN; }},
  };
  for (const Case& k : cases) {
    CAPTURE(k.what);
    nrb_light bad[2] = {point(0, 1, 0, 1, 1, 1), spot()};
    k.spoil(bad[1]);
    CHECK(nrb_frame_set_lights(c, bad, 2) == NRB_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(nrb_last_error(c)).find(k.what) != std::string::npos);
  }
  nrb_light unversioned = point(0, 1, 0, 1, 1, 1);
  unversioned.struct_version = 0;
  CHECK(nrb_frame_set_lights(c, &unversioned, 1) == NRB_ERROR_UNSUPPORTED_VERSION);
  std::vector<nrb_light> many(NRB_MAX_LIGHTS + 1, point(0, 1, 0, 1, 1, 1));
  CHECK(nrb_frame_set_lights(c, many.data(), NRB_MAX_LIGHTS + 1) == NRB_ERROR_LIMIT_EXCEEDED);
  CHECK(nrb_frame_set_lights(c, many.data(), NRB_MAX_LIGHTS) == NRB_OK);
  nrb_light pointing_anywhere = point(0, 1, 0, 1, 1, 1);  // a point light's direction is not read
  pointing_anywhere.direction[1] = 0.0f;
  CHECK(nrb_frame_set_lights(c, &pointing_anywhere, 1) == NRB_OK);
  nrb_client_destroy(c);
}

TEST_CASE("lights: the renderer receives the rows of section 6.1, 4 texels per light, at any render size") {
  TestRenderer r;
  nrb::client_config cfg;
  cfg.endpoint(r.endpoint()).engine("doctest").buffer(NRB_BUFFER_X_LIGHTS, NRB_FORMAT_RGBA32F)
      .buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F);
  cfg->transport = NRB_TRANSPORT_INLINE;
  cfg->render_width = 16;  // not 4 x 2: the list must not be resampled to the render size
  cfg->render_height = 8;
  cfg->handshake_timeout_ms = 300;
  nrb::client c(cfg);
  auto until = std::chrono::steady_clock::now() + 3s;
  while (c.stats().state != NRB_STATE_CONNECTED && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(2ms);
  REQUIRE(c.stats().state == NRB_STATE_CONNECTED);

  std::vector<nrb_light> lights = {point(0.5f, 1.8f, -2.0f, 3.6f, 1.98f, 0.79f, 6.0f), spot()};
  c.begin();
  c.set_lights(lights);  // first buffer: the test renderer keeps the first buffer's pixels
  std::vector<float> depth(16 * 8, 0.5f);
  c.tag_buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F, 16, 8, depth.data());
  c.submit();
  until = std::chrono::steady_clock::now() + 3s;
  while (r.frames().empty() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
  auto frames = r.frames();
  REQUIRE(frames.size() >= 1);
  const auto& b = frames[0].buffers[0];
  CHECK(b.name == "x_lights");
  CHECK(b.format == nrb::wire::Format::rgba32f);
  CHECK(b.width == 4);
  CHECK(b.height == 2);
  auto px = r.first_buffers()[0];
  REQUIRE(px.size() == 2 * 4 * 4 * sizeof(float));
  std::vector<float> got(px.size() / sizeof(float));
  std::memcpy(got.data(), px.data(), px.size());
  const std::vector<float> want = {
      0.5f, 1.8f, -2.0f, 0.0f, 0.0f, -1.0f, 0.0f, 6.0f, 3.6f, 1.98f, 0.79f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
      1.0f, 3.0f, 0.0f, 1.0f, 0.0f, -1.0f, 0.0f, 0.0f, 0.77f, 1.54f, 3.52f, 0.0f, 0.2f, 0.3f, 0.0f, 0.0f,
  };
  CHECK(got == want);

  // Tagged by hand (nrb_frame_tag_buffer) it travels as it is too, not resampled to the render size like an image.
  c.begin();
  c.tag_buffer(NRB_BUFFER_X_LIGHTS, NRB_FORMAT_RGBA32F, 4, 2, want.data());
  c.tag_buffer(NRB_BUFFER_DEPTH, NRB_FORMAT_R32F, 16, 8, depth.data());
  c.submit();
  until = std::chrono::steady_clock::now() + 3s;
  while (r.frames().size() < 2 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
  frames = r.frames();
  REQUIRE(frames.size() >= 2);
  CHECK(frames[1].buffers[0].width == 4);
  CHECK(frames[1].buffers[0].height == 2);
  CHECK(r.first_buffers()[1] == px);
}
