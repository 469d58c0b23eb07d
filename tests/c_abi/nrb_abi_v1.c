/* nrb_abi_v1.c: freezes libnrb's C ABI version 1. A C99 program that includes nrb.h alone (no C++ header, no
 * protocol code of its own) and, given an endpoint, drives a real `nrb serve --renderer passthrough` through the
 * whole engine contract: connect, tag buffers by their NRB_BUFFER_* names, fire an event with typed params, set a
 * style, submit, get the echoed image back byte for byte, read the statistics, destroy.
 *
 *     nrb_abi_v1 unit              checks that need no server (params builder, constants, versions)
 *     nrb_abi_v1 e2e <endpoint>    the frame loop against a passthrough renderer
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

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "unit") == 0) {
    unit();
  } else if (argc >= 3 && strcmp(argv[1], "e2e") == 0) {
    e2e(argv[2]);
  } else {
    fprintf(stderr, "usage: %s unit | e2e <endpoint>\n", argv[0]);
    return 2;
  }
  if (failures == 0) printf("OK %s\n", argv[1]);
  return failures;
}
