/* nrb_abi_v1.c: freezes libnrb's C ABI version 1. A C99 program that includes nrb.h alone (no C++ header, no
 * protocol code of its own) and, given an endpoint, drives a real `nrb serve --renderer passthrough` through the
 * whole engine contract: connect, tag buffers by their NRB_BUFFER_* names, fire an event with typed params, set a
 * style, submit, get the echoed image back byte for byte, read the statistics, destroy.
 *
 *     nrb_abi_v1 unit              checks that need no server (params builder, constants, versions)
 *     nrb_abi_v1 e2e <endpoint>    the frame loop against a passthrough renderer
 *     nrb_abi_v1 styles <endpoint> styles as data (added after ABI 1 froze, by appending): a style written at run
 *                                  time, intensity, a bad parameter answered by the renderer, camera v2
 *
 * Prints one line per failed check and "OK <mode>" at the end when every check passed; the exit status is the
 * number of failures. Built by tests/test_c_abi.py with -std=c99 -Wall -Wextra -Werror -pedantic, through
 * CMake's find_package(nrb) on an installed libnrb (tests/c_abi/CMakeLists.txt). */
#define _POSIX_C_SOURCE 199309L /* nanosleep */
#include <nrb/nrb.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

static int failures = 0;

#define CHECK(cond, what)                                                                              \
  do {                                                                                                 \
    if (!(cond)) {                                                                                     \
      ++failures;                                                                                      \
      printf("FAIL %s:%d: %s (%s) [last error: %s]\n", __FILE__, __LINE__, what, #cond, nrb_last_error(NULL)); \
    }                                                                                                  \
  } while (0)

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* The params bytes must be exactly `want` (canonical msgpack, docs/protocol.md section 3.1). */
static int params_equal(const nrb_params* p, const unsigned char* want, size_t want_size) {
  const void* data = NULL;
  size_t size = 0;
  if (nrb_params_data(p, &data, &size) != NRB_OK) return 0;
  return size == want_size && memcmp(data, want, size) == 0;
}

static void unit(void) {
  static const unsigned char expected[] = {
      0x83,                                                   /* map of 3 */
      0xa5, 'p', 'o', 'w', 'e', 'r', 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0, /* "power": 2.5 (float64) */
      0xa4, 'h', 'i', 't', 's', 0x92, 0x2a, 0xff,             /* "hits": [42, -1] */
      0xa2, 'o', 'n', 0xc3,                                    /* "on": true */
  };
  nrb_params* p = NULL;
  int depth;
  char big[5000];

  CHECK(nrb_get_abi_version() == NRB_ABI_VERSION && NRB_ABI_VERSION == 1, "ABI version 1");
  CHECK(nrb_get_version() == NRB_VERSION, "library version");
  CHECK(strcmp(NRB_BUFFER_ALBEDO, "albedo") == 0 && strcmp(NRB_BUFFER_X_SUN_DIRECTION, "x_sun_direction") == 0,
        "buffer constants");
  CHECK(nrb_buffer_name(0) != NULL && strcmp(nrb_buffer_name(0), NRB_BUFFER_DEPTH) == 0, "first buffer name");
  CHECK(nrb_buffer_name(NRB_BUFFER_NAME_COUNT - 1) != NULL && nrb_buffer_name(NRB_BUFFER_NAME_COUNT) == NULL,
        "buffer name count");
  CHECK(nrb_format_bytes_per_pixel(NRB_FORMAT_RGBA32F) == 16 && strcmp(nrb_format_name(NRB_FORMAT_R32U), "r32u") == 0,
        "formats");
  CHECK(nrb_format_name(NRB_FORMAT_COUNT) != NULL && nrb_format_name(NRB_FORMAT_COUNT + 1) == NULL, "format count");

  CHECK(nrb_params_create(&p) == NRB_OK && p != NULL, "params create");
  if (!p) return;
  CHECK(nrb_params_set_float(p, "power", 2.5) == NRB_OK, "float");
  CHECK(nrb_params_begin_array(p, "hits") == NRB_OK, "begin array");
  CHECK(nrb_params_set_int(p, NULL, 42) == NRB_OK && nrb_params_set_int(p, NULL, -1) == NRB_OK, "ints in array");
  CHECK(nrb_params_set_int(p, "key", 1) == NRB_ERROR_INVALID_ARGUMENT, "a key inside an array");
  {
    const void* d = NULL;
    size_t n = 0;
    CHECK(nrb_params_data(p, &d, &n) == NRB_ERROR_INVALID_STATE, "data while an array is open");
  }
  CHECK(nrb_params_end(p) == NRB_OK, "end array");
  CHECK(nrb_params_set_bool(p, "on", 1) == NRB_OK, "bool");
  CHECK(params_equal(p, expected, sizeof expected), "canonical bytes");
  /* Each broken rule is refused at its call, and the builder stays as it was. */
  CHECK(nrb_params_set_int(p, NULL, 1) == NRB_ERROR_INVALID_ARGUMENT, "a value without key in a map");
  CHECK(nrb_params_set_int(p, "power", 1) == NRB_ERROR_INVALID_ARGUMENT, "a repeated key");
  CHECK(strstr(nrb_last_error(NULL), "power") != NULL, "the error names the key");
  CHECK(nrb_params_set_string(p, "bad", "\xff\xfe") == NRB_ERROR_INVALID_ARGUMENT, "a string that is not UTF-8");
  CHECK(nrb_params_end(p) == NRB_ERROR_INVALID_STATE, "end with nothing open");
  CHECK(params_equal(p, expected, sizeof expected), "unchanged after refused calls");

  /* Depth: the params map is 1, seven nested maps reach 8, the eighth would be 9. */
  CHECK(nrb_params_clear(p) == NRB_OK, "clear");
  for (depth = 2; depth <= 8; ++depth) CHECK(nrb_params_begin_map(p, "d") == NRB_OK, "nesting up to 8");
  CHECK(nrb_params_begin_map(p, "d") == NRB_ERROR_LIMIT_EXCEEDED, "nesting 9");
  CHECK(nrb_params_begin_array(p, "d") == NRB_ERROR_LIMIT_EXCEEDED, "nesting 9 (array)");
  for (depth = 2; depth <= 8; ++depth) CHECK(nrb_params_end(p) == NRB_OK, "closing");

  /* Size: 4096 encoded bytes at most. */
  CHECK(nrb_params_clear(p) == NRB_OK, "clear");
  memset(big, 'a', sizeof big);
  CHECK(nrb_params_set_string_n(p, "s", big, 4096 - 1 - 2 - 3) == NRB_OK, "exactly 4096 bytes");
  {
    const void* d = NULL;
    size_t n = 0;
    CHECK(nrb_params_data(p, &d, &n) == NRB_OK && n == 4096, "4096 bytes encoded");
  }
  CHECK(nrb_params_set_nil(p, "t") == NRB_ERROR_LIMIT_EXCEEDED, "one more entry exceeds 4096 bytes");
  CHECK(nrb_params_clear(p) == NRB_OK, "clear");
  CHECK(nrb_params_set_bytes(p, "b", big, sizeof big) == NRB_ERROR_LIMIT_EXCEEDED, "a 5000-byte blob");
  nrb_params_destroy(p);
  nrb_params_destroy(NULL);
}

/* Styles as data, the checks made at the call (docs/protocol.md 5.3, 8): no server needed. */
static void unit_styles(void) {
  nrb_client_config cfg;
  nrb_client* c = NULL;
  nrb_params* p = NULL;
  nrb_camera cam;
  uint32_t object_ids[1] = {7};
  nrb_target objects;
  int i;
  char key[8];

  CHECK(strcmp(nrb_tone_mapping_name(NRB_TONE_MAPPING_ACES), "aces") == 0 &&
            strcmp(nrb_tone_mapping_name(NRB_TONE_MAPPING_OTHER), "other") == 0 &&
            nrb_tone_mapping_name(NRB_TONE_MAPPING_UNSET) == NULL &&
            nrb_tone_mapping_name(NRB_TONE_MAPPING_COUNT + 1) == NULL,
        "tone mapping names");
  CHECK(strcmp(NRB_BUFFER_NEURAL_MASK, "neural_mask") == 0 && strcmp(nrb_buffer_name(28), NRB_BUFFER_NEURAL_MASK) == 0,
        "the mask buffer's name, appended to the names (index 28 keeps it)");
  CHECK(strcmp(NRB_BUFFER_X_LIGHTS, "x_lights") == 0 &&
            strcmp(nrb_buffer_name(NRB_BUFFER_NAME_COUNT - 1), NRB_BUFFER_X_LIGHTS) == 0,
        "the light list's name, appended after it");
  nrb_client_config_init(&cfg);
  cfg.endpoint = "tcp://127.0.0.1:9";
  cfg.render_width = 8;
  cfg.render_height = 8;
  cfg.start_disabled = 1;
  CHECK(nrb_client_create(&cfg, &c) == NRB_OK && c != NULL, "client create");
  if (!c) return;
  CHECK(nrb_params_create(&p) == NRB_OK, "params create");
  nrb_params_set_float(p, "hue", 35.0);
  nrb_params_begin_array(p, "gain");
  nrb_params_set_float(p, NULL, 0.85);
  nrb_params_set_float(p, NULL, 1.1);
  nrb_params_set_int(p, NULL, 1);
  nrb_params_end(p);
  nrb_params_set_string(p, "lut", "sunset");
  CHECK(nrb_set_style_params(c, "poison", p, 1.0, 0.5, NULL) == NRB_OK, "a parameter set");
  CHECK(nrb_set_style_params(c, "neutral", NULL, 1.0, 0.0, NULL) == NRB_OK, "an empty parameter set");
  CHECK(nrb_params_set_string(p, "saturation", "high") == NRB_OK, "a str value (the builder takes it)");
  CHECK(nrb_set_style_params(c, "poison", p, 1.0, 0.5, NULL) == NRB_ERROR_INVALID_ARGUMENT,
        "a str for a number parameter is refused at the call");
  CHECK(strstr(nrb_last_error(c), "saturation") != NULL, "the error names the parameter");
  CHECK(nrb_params_clear(p) == NRB_OK, "clear");
  nrb_params_begin_array(p, "gain");
  nrb_params_set_float(p, NULL, 1.0);
  nrb_params_end(p);
  CHECK(nrb_set_style_params(c, "poison", p, 1.0, 0.0, NULL) == NRB_ERROR_INVALID_ARGUMENT, "RGB with one number");
  CHECK(nrb_params_clear(p) == NRB_OK, "clear");
  for (i = 0; i < 33; ++i) {
    sprintf(key, "p%d", i);
    nrb_params_set_float(p, key, 1.0);
  }
  CHECK(nrb_set_style_params(c, "many", p, 1.0, 0.0, NULL) == NRB_ERROR_LIMIT_EXCEEDED, "33 parameters");
  CHECK(nrb_set_style_params(c, "poison", NULL, 1.5, 0.0, NULL) == NRB_ERROR_INVALID_ARGUMENT, "strength 1.5");
  nrb_params_destroy(p);

  CHECK(nrb_set_intensity(c, 0.25, 1.0) == NRB_OK, "intensity");
  CHECK(nrb_set_intensity(c, 1.5, 0.0) == NRB_ERROR_INVALID_ARGUMENT, "intensity above 1");
  CHECK(nrb_set_intensity(c, 1.0, -1.0) == NRB_ERROR_INVALID_ARGUMENT, "a negative tween");
  objects.scope = NRB_SCOPE_OBJECT;
  objects.ids = object_ids;
  objects.id_count = 1;
  CHECK(nrb_exclude(c, &objects, 1) == NRB_OK && nrb_exclude(c, &objects, 0) == NRB_OK, "exclude, include");
  CHECK(nrb_exclude(c, NULL, 0) == NRB_OK, "include every id");
  CHECK(nrb_exclude(c, NULL, 1) == NRB_ERROR_INVALID_ARGUMENT, "excluding everything (that is intensity 0)");

  CHECK(nrb_frame_begin(c, NULL, NULL) == NRB_OK, "begin");
  nrb_camera_init(&cam);
  CHECK(cam.struct_version == 2, "camera struct version 2");
  cam.pre_exposure = 0.5;
  cam.tone_mapping = NRB_TONE_MAPPING_AGX;
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_OK, "a v2 camera with tone mapping");
  cam.tone_mapping = NRB_TONE_MAPPING_COUNT + 1;
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_ERROR_INVALID_ARGUMENT, "an unknown tone mapping");
  cam.tone_mapping = NRB_TONE_MAPPING_NONE;
  cam.pre_exposure = -1.0;
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_ERROR_INVALID_ARGUMENT, "a negative pre-exposure");
  /* a program built against camera version 1 passes the smaller struct: still accepted */
  cam.pre_exposure = 1.0;
  cam.struct_version = 1;
  cam.struct_size = (uint32_t)offsetof(nrb_camera, tone_mapping);
  cam.tone_mapping = 99; /* past a v1 struct: never read */
  CHECK(nrb_frame_set_camera(c, &cam) == NRB_OK, "a version 1 camera");
  {
    nrb_light lights[2];
    nrb_light_init(&lights[0]);
    nrb_light_init(&lights[1]);
    lights[0].color[0] = lights[0].color[1] = lights[0].color[2] = 5.0f; /* a point light */
    lights[1].type = NRB_LIGHT_SPOT;
    lights[1].outer_cone = 0.5f;
    lights[1].inner_cone = 0.6f; /* wider than the outer cone */
    CHECK(nrb_frame_set_lights(c, lights, 1) == NRB_OK, "a point light");
    CHECK(nrb_frame_set_lights(c, lights, 2) == NRB_ERROR_INVALID_ARGUMENT &&
              strstr(nrb_last_error(c), "lights[1].inner_cone") != NULL,
          "a spot cone narrower outside than inside, named");
    CHECK(nrb_frame_set_lights(c, lights, NRB_MAX_LIGHTS + 1) == NRB_ERROR_LIMIT_EXCEEDED, "more than 64 lights");
  }
  nrb_client_destroy(c);
}

#define W 32
#define H 16

static void e2e(const char* endpoint) {
  nrb_client_config cfg;
  nrb_buffer_spec specs[2];
  nrb_client* c = NULL;
  nrb_params* p = NULL;
  nrb_stats stats;
  static unsigned char albedo[H][W][4];
  float sun[4] = {0.0f, 1.0f, 0.0f, 0.0f};
  int x, y, frame, got = 0, connected = 0;
  uint64_t ids[1] = {0};
  uint32_t object_ids[2] = {7, 9};
  nrb_target target;

  for (y = 0; y < H; ++y)
    for (x = 0; x < W; ++x) {
      albedo[y][x][0] = (unsigned char)(x * 8);
      albedo[y][x][1] = (unsigned char)(y * 16);
      albedo[y][x][2] = (unsigned char)(x + y);
      albedo[y][x][3] = 255;
    }

  specs[0].name = NRB_BUFFER_ALBEDO;
  specs[0].format = NRB_FORMAT_RGBA8_SRGB;
  specs[1].name = NRB_BUFFER_X_SUN_DIRECTION;
  specs[1].format = NRB_FORMAT_RGBA32F;
  nrb_client_config_init(&cfg);
  cfg.endpoint = endpoint;
  cfg.engine_name = "c99";
  cfg.render_width = W;
  cfg.render_height = H;
  cfg.buffers = specs;
  cfg.buffer_count = 2;
  cfg.transport = NRB_TRANSPORT_INLINE;
  cfg.deadline_ms = 5000;
  CHECK(nrb_client_create(&cfg, &c) == NRB_OK && c != NULL, "client create");
  if (!c) return;

  CHECK(nrb_params_create(&p) == NRB_OK, "params create");
  nrb_params_set_string(p, "weapon", "laser");
  nrb_params_set_float(p, "power", 2.5);
  nrb_params_begin_map(p, "at");
  nrb_params_set_int(p, "x", -3);
  nrb_params_set_uint(p, "y", 70000);
  nrb_params_end(p);
  nrb_params_begin_array(p, "tags");
  nrb_params_set_string(p, NULL, "a");
  nrb_params_set_nil(p, NULL);
  nrb_params_set_bool(p, NULL, 0);
  nrb_params_end(p);
  target.scope = NRB_SCOPE_OBJECT;
  target.ids = object_ids;
  target.id_count = 2;

  memset(&stats, 0, sizeof stats);
  for (frame = 0; frame < 500 && (got < 3 || stats.events_sent < 3); ++frame) {
    nrb_buffer_desc d;
    nrb_result r;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.struct_version = NRB_BUFFER_DESC_VERSION;
    CHECK(nrb_frame_begin(c, NULL, &ids[0]) == NRB_OK, "begin");
    d.name = NRB_BUFFER_ALBEDO;
    d.format = NRB_FORMAT_RGBA8_SRGB;
    d.width = W;
    d.height = H;
    d.data = albedo;
    CHECK(nrb_frame_tag_buffer(c, &d) == NRB_OK, "tag albedo");
    d.name = NRB_BUFFER_X_SUN_DIRECTION;
    d.format = NRB_FORMAT_RGBA32F;
    d.width = 1;
    d.height = 1;
    d.data = sun;
    CHECK(nrb_frame_tag_buffer(c, &d) == NRB_OK, "tag a lighting constant");
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    stats.struct_version = NRB_STATS_VERSION;
    CHECK(nrb_get_stats(c, &stats) == NRB_OK, "stats");
    if (stats.state == NRB_STATE_CONNECTED && !connected) {
      connected = 1; /* fired once, on the first frame that can carry them */
      CHECK(nrb_fire_event_params(c, "weapon_powerup", p, &target) == NRB_OK, "typed event");
      CHECK(nrb_fire_event_params(c, "empty", NULL, NULL) == NRB_OK, "event without params");
      CHECK(nrb_set_style(c, "toon", 0.5, 0.0, NULL) == NRB_OK, "style");
    }
    CHECK(nrb_frame_submit(c) == NRB_OK, "submit");
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.struct_version = NRB_RESULT_VERSION;
    if (nrb_acquire_result(c, &r) == NRB_OK) {
      int same = r.width == W && r.height == H;
      for (y = 0; same && y < H; ++y)
        same = memcmp((const unsigned char*)r.pixels + (size_t)y * r.stride, albedo[y], W * 4) == 0;
      CHECK(same, "the passthrough renderer echoes the albedo byte for byte");
      CHECK(nrb_release_result(c, &r) == NRB_OK, "release");
      if (connected) ++got;
    }
    sleep_ms(10);
  }
  nrb_params_destroy(p); /* the event was copied when fired */
  CHECK(got >= 3, "results after the event");
  memset(&stats, 0, sizeof stats);
  stats.struct_size = sizeof stats;
  stats.struct_version = NRB_STATS_VERSION;
  CHECK(nrb_get_stats(c, &stats) == NRB_OK, "stats");
  CHECK(stats.events_sent == 3 && stats.events_pending == 0, "two events and a style acknowledged");
  CHECK(stats.results_received >= 3 && stats.frames_sent >= 3, "frames and results counted");
  printf("frames_sent=%llu results_received=%llu events_sent=%llu\n", (unsigned long long)stats.frames_sent,
         (unsigned long long)stats.results_received, (unsigned long long)stats.events_sent);
  nrb_client_destroy(c);
}

/* Styles as data against `nrb serve --renderer passthrough`: the renderer echoes albedo (hudless_color when sent,
 * so this sends only albedo first), the server's grading applies a style the program writes at run time, then the
 * intensity shows the engine's image. */
static void e2e_styles(const char* endpoint) {
  nrb_client_config cfg;
  nrb_buffer_spec specs[2];
  nrb_client* c = NULL;
  nrb_params* p = NULL;
  nrb_stats stats;
  nrb_camera cam;
  static unsigned char albedo[H][W][4], engine[H][W][4];
  int x, y, frame, phase = 0, settle = 0;
  long sum_albedo = 0;

  for (y = 0; y < H; ++y)
    for (x = 0; x < W; ++x) {
      albedo[y][x][0] = (unsigned char)(100 + x * 4);
      albedo[y][x][1] = (unsigned char)(80 + y * 8);
      albedo[y][x][2] = (unsigned char)(60 + x + y);
      albedo[y][x][3] = 255;
      engine[y][x][0] = 10, engine[y][x][1] = 200, engine[y][x][2] = 30, engine[y][x][3] = 255;
      sum_albedo += albedo[y][x][0] + albedo[y][x][1] + albedo[y][x][2];
    }
  specs[0].name = NRB_BUFFER_ALBEDO;
  specs[0].format = NRB_FORMAT_RGBA8_SRGB;
  specs[1].name = NRB_BUFFER_HUDLESS_COLOR;
  specs[1].format = NRB_FORMAT_RGBA8_SRGB;
  nrb_client_config_init(&cfg);
  cfg.endpoint = endpoint;
  cfg.engine_name = "c99-styles";
  cfg.render_width = W;
  cfg.render_height = H;
  cfg.buffers = specs;
  cfg.buffer_count = 2;
  cfg.transport = NRB_TRANSPORT_INLINE;
  cfg.deadline_ms = 5000;
  CHECK(nrb_client_create(&cfg, &c) == NRB_OK && c != NULL, "client create");
  if (!c) return;
  CHECK(nrb_params_create(&p) == NRB_OK, "params create");

  /* phase 0: connect; 1: "dim" (gain 0.5) defined, wait until the image is darker than the albedo; 2: a bad
   * parameter, wait for the renderer's ERROR; 3: intensity 0, wait for the engine's image; 4: done */
  for (frame = 0; frame < 1000 && phase < 4; ++frame) {
    nrb_buffer_desc d;
    nrb_result r;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.struct_version = NRB_BUFFER_DESC_VERSION;
    CHECK(nrb_frame_begin(c, NULL, NULL) == NRB_OK, "begin");
    d.name = NRB_BUFFER_ALBEDO;
    d.format = NRB_FORMAT_RGBA8_SRGB;
    d.width = W;
    d.height = H;
    d.data = albedo;
    CHECK(nrb_frame_tag_buffer(c, &d) == NRB_OK, "tag albedo");
    if (phase >= 3) { /* the engine's own image, from here on (the passthrough echoes it: grading shows on it) */
      d.name = NRB_BUFFER_HUDLESS_COLOR;
      d.data = engine;
      CHECK(nrb_frame_tag_buffer(c, &d) == NRB_OK, "tag hudless_color");
    }
    nrb_camera_init(&cam);
    cam.pre_exposure = 0.75;
    cam.tone_mapping = NRB_TONE_MAPPING_ACES;
    CHECK(nrb_frame_set_camera(c, &cam) == NRB_OK, "camera with tone mapping");
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    stats.struct_version = NRB_STATS_VERSION;
    CHECK(nrb_get_stats(c, &stats) == NRB_OK, "stats");
    if (phase == 0 && stats.state == NRB_STATE_CONNECTED) {
      nrb_params_set_float(p, "gain", 0.5);
      CHECK(nrb_set_style_params(c, "dim", p, 1.0, 0.0, NULL) == NRB_OK, "define a style at run time");
      phase = 1;
    } else if (phase == 2 && stats.errors_received > 0) {
      if (++settle > 3) { /* frames after the rejected one render again */
        CHECK(nrb_set_intensity(c, 0.0, 0.0) == NRB_OK, "intensity 0");
        phase = 3;
      }
    }
    CHECK(nrb_frame_submit(c) == NRB_OK, "submit");
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.struct_version = NRB_RESULT_VERSION;
    if (nrb_acquire_result(c, &r) == NRB_OK) {
      long sum = 0;
      int engines = r.width == W && r.height == H;
      for (y = 0; y < H && r.width == W; ++y) {
        const unsigned char* row = (const unsigned char*)r.pixels + (size_t)y * r.stride;
        for (x = 0; x < W; ++x) sum += row[x * 4] + row[x * 4 + 1] + row[x * 4 + 2];
        engines = engines && memcmp(row, engine[y], W * 4) == 0;
      }
      if (phase == 1 && sum * 10 < sum_albedo * 7) { /* the grading stage drew the parameter set */
        nrb_params_clear(p);
        nrb_params_set_float(p, "sparkle", 1.0); /* libnrb does not know the names: the renderer refuses it */
        CHECK(nrb_set_style_params(c, "sparkly", p, 1.0, 0.0, NULL) == NRB_OK, "an unknown parameter is queued");
        phase = 2;
      } else if (phase == 3 && engines) {
        phase = 4;
      }
      CHECK(nrb_release_result(c, &r) == NRB_OK, "release");
    }
    sleep_ms(10);
  }
  nrb_params_destroy(p);
  CHECK(phase == 4, "a run-time style darkened the image, a bad parameter was refused, intensity 0 showed the "
                    "engine's image");
  printf("styles: phase=%d frames=%d errors_received=%llu\n", phase, frame,
         (unsigned long long)stats.errors_received);
  CHECK(stats.errors_received == 1, "exactly one frame refused (the unknown parameter)");
  nrb_client_destroy(c);
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "unit") == 0) {
    unit();
    unit_styles();
  } else if (argc >= 3 && strcmp(argv[1], "e2e") == 0) {
    e2e(argv[2]);
  } else if (argc >= 3 && strcmp(argv[1], "styles") == 0) {
    e2e_styles(argv[2]);
  } else {
    fprintf(stderr, "usage: %s unit | e2e <endpoint> | styles <endpoint>\n", argv[0]);
    return 2;
  }
  if (failures == 0) printf("OK %s\n", argv[1]);
  return failures;
}
