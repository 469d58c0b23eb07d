/*
 * nrb.h: the C ABI of libnrb, the engine side of the Neural Render Bridge (docs/protocol.md, NRB/1).
 *
 * Design (in the style of NVIDIA Streamline and AMD FidelityFX):
 *   - Every struct the caller passes in or receives begins with `uint32_t struct_size` (sizeof the caller's struct)
 *     and `uint32_t struct_version` (the NRB_*_VERSION constant the caller compiled against). Fields are only ever
 *     appended; the library reads/writes only the first `struct_size` bytes, so a binary built against an older
 *     header keeps working with a newer library. Use the *_init() helpers (or memset 0 + set the two fields).
 *     A zero in any other field means "the documented default".
 *   - Every function returns an nrb_status (never throws, never aborts); on an error the text is available from
 *     nrb_last_error(). NRB_NO_RESULT is not an error: it means "show your own image this frame".
 *   - Ownership is explicit: the caller owns everything it passes in (the library copies what it keeps, unless a
 *     function says otherwise); the library owns everything it hands out (pointers stay valid for the documented
 *     lifetime).
 *   - Threads: "render thread" below means "one thread at a time per client" (normally the engine's render
 *     thread); functions marked "any thread" may be called concurrently from any thread. No function blocks on
 *     the network: an internal I/O thread per client owns the ZeroMQ socket. With compression or lossy return on,
 *     a small pool of worker threads per client ("nrb-pool", 2..4) compresses the frames and decompresses or
 *     decodes the returned images, so neither the engine's threads nor the I/O thread spend time on codecs.
 *
 * ABI version 1 (NRB_ABI_VERSION, nrb_get_abi_version()) is frozen: every function, struct layout (at the struct
 * versions listed below), enumerator and constant of this header keeps its meaning and binary form. Later versions
 * only add (functions, constants, fields appended to a struct under a new struct_version); nothing is removed or
 * changed. tests/test_c_abi.py compiles tests/c_abi/nrb_abi_v1.c, a C99 program that includes this header alone,
 * against libnrb and drives a real `nrb serve` through it. docs/plugins.md ("The C ABI") describes it for plugin
 * authors.
 *
 * What a plugin needs is all here, so no plugin carries protocol code of its own:
 *   - buffer names as constants (NRB_BUFFER_*, docs/protocol.md section 6.1) and formats (nrb_format, section 6.2);
 *   - event parameters built with the typed nrb_params builder (no msgpack encoder in the plugin): the library
 *     encodes them canonically (section 3.1) and enforces section 3.2's limits at the call that breaks them.
 *
 * Typical frame:
 *     nrb_frame_begin(c, NULL, &frame_id);
 *     nrb_frame_tag_buffer(c, &depth_desc);               // copied now, or:
 *     nrb_frame_acquire_slot(c, &color_desc, &p, &stride) // write straight into shared memory
 *     nrb_frame_set_camera(c, &cam);
 *     nrb_frame_submit(c);                                // returns at once
 *     if (nrb_acquire_result(c, &res) == NRB_OK) { draw res.pixels; nrb_release_result(c, &res); }
 *     else { draw the engine's own image; }
 */
#ifndef NRB_NRB_H
#define NRB_NRB_H

#include <stddef.h>
#include <stdint.h>

#include "nrb/nrb_export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------------------ */
/* Versions                                                                                                     */
/* ------------------------------------------------------------------------------------------------------------ */
#define NRB_MAKE_VERSION(major, minor, patch) (((uint32_t)(major) << 22) | ((uint32_t)(minor) << 12) | (uint32_t)(patch))
#define NRB_VERSION_MAJOR 0
#define NRB_VERSION_MINOR 1
#define NRB_VERSION_PATCH 0
#define NRB_VERSION NRB_MAKE_VERSION(NRB_VERSION_MAJOR, NRB_VERSION_MINOR, NRB_VERSION_PATCH)
#define NRB_PROTOCOL_VERSION 1 /* NRB/1 */
#define NRB_ABI_VERSION 1      /* this header's ABI: see the top of the file */

/* Struct versions (bumped when fields are appended). */
#define NRB_CLIENT_CONFIG_VERSION 3 /* 2: renderer, lossy_quality; 3: link, exact_formats, lossy_codec */
#define NRB_BUFFER_DESC_VERSION 1
#define NRB_CAMERA_VERSION 2 /* 2: tone_mapping */
#define NRB_FRAME_INFO_VERSION 1
#define NRB_RESULT_VERSION 1
#define NRB_LIGHT_VERSION 1
#define NRB_STATS_VERSION 5 /* 2: doorbell_active; 3: refusal_code, refusal_message; 4: in_flight_limit;
                              5: service_ms, link_ms */

/* The library's version (NRB_MAKE_VERSION layout). Any thread. */
NRB_API uint32_t nrb_get_version(void);
/* "0.1.0"; static storage. Any thread. */
NRB_API const char* nrb_get_version_string(void);
/* NRB_ABI_VERSION of the library (1). A plugin built against ABI 1 works with any library whose ABI is >= 1. */
NRB_API uint32_t nrb_get_abi_version(void);

/* ------------------------------------------------------------------------------------------------------------ */
/* Status codes                                                                                                 */
/* ------------------------------------------------------------------------------------------------------------ */
typedef int32_t nrb_status;
enum {
  NRB_OK = 0,
  NRB_NO_RESULT = 1,                     /* no fresh rendered image: the engine shows its own image */
  NRB_ERROR_INVALID_ARGUMENT = -1,       /* NULL where not allowed, bad enum, size out of range, bad name, ... */
  NRB_ERROR_INVALID_STATE = -2,          /* e.g. nrb_frame_tag_buffer without nrb_frame_begin */
  NRB_ERROR_UNSUPPORTED_VERSION = -3,    /* struct_size too small or struct_version newer than the library */
  NRB_ERROR_OUT_OF_MEMORY = -4,
  NRB_ERROR_LIMIT_EXCEEDED = -5,         /* protocol limits (docs/protocol.md section 11), shm slot too small */
  NRB_ERROR_NOT_FOUND = -6,              /* e.g. releasing a result that is not held */
  NRB_ERROR_TRANSPORT = -7,              /* the ZeroMQ context/socket could not be created */
  NRB_ERROR_INTERNAL = -100
};

/* Short name of a status ("NRB_OK", ...); static storage. Any thread. */
NRB_API const char* nrb_status_name(nrb_status status);

/* ------------------------------------------------------------------------------------------------------------ */
/* Enumerations (uint32_t on the ABI)                                                                           */
/* ------------------------------------------------------------------------------------------------------------ */
/* Pixel formats, docs/protocol.md section 6.2. */
typedef uint32_t nrb_format;
enum {
  NRB_FORMAT_UNKNOWN = 0,
  NRB_FORMAT_RGBA8 = 1,
  NRB_FORMAT_RGBA8_SRGB = 2,
  NRB_FORMAT_RGBA16F = 3,
  NRB_FORMAT_RGBA32F = 4,
  NRB_FORMAT_RG8 = 5,
  NRB_FORMAT_RG16F = 6,
  NRB_FORMAT_RG32F = 7,
  NRB_FORMAT_R8 = 8,
  NRB_FORMAT_R16F = 9,
  NRB_FORMAT_R32F = 10,
  NRB_FORMAT_R16U = 11,
  NRB_FORMAT_R32U = 12
};
#define NRB_FORMAT_COUNT 12 /* the formats above: NRB_FORMAT_RGBA8 .. NRB_FORMAT_R32U */
/* Bytes per pixel of a format, 0 for an unknown one. Any thread. */
NRB_API uint32_t nrb_format_bytes_per_pixel(nrb_format format);
/* Wire name ("rgba8", ...), NULL for an unknown one; static storage. Any thread. */
NRB_API const char* nrb_format_name(nrb_format format);

/* Buffer names, docs/protocol.md section 6.1 (Streamline's kBufferType* in snake case, then NRB's additions). Use
 * these for nrb_buffer_spec.name and nrb_buffer_desc.name instead of string literals. */
#define NRB_BUFFER_DEPTH "depth"
#define NRB_BUFFER_LINEAR_DEPTH "linear_depth"
#define NRB_BUFFER_MOTION_VECTORS "motion_vectors"
#define NRB_BUFFER_HUDLESS_COLOR "hudless_color"
#define NRB_BUFFER_SCALING_INPUT_COLOR "scaling_input_color"
#define NRB_BUFFER_NORMALS "normals"
#define NRB_BUFFER_ROUGHNESS "roughness"
#define NRB_BUFFER_NORMAL_ROUGHNESS "normal_roughness"
#define NRB_BUFFER_ALBEDO "albedo"
#define NRB_BUFFER_SPECULAR_ALBEDO "specular_albedo"
#define NRB_BUFFER_EMISSIVE "emissive"
#define NRB_BUFFER_EXPOSURE "exposure"
#define NRB_BUFFER_POSITION "position"
#define NRB_BUFFER_ALPHA "alpha"
#define NRB_BUFFER_OPAQUE_COLOR "opaque_color"
#define NRB_BUFFER_UI_COLOR_AND_ALPHA "ui_color_and_alpha"
#define NRB_BUFFER_REACTIVE_MASK "reactive_mask"
#define NRB_BUFFER_TRANSPARENCY_AND_COMPOSITION_MASK "transparency_and_composition_mask"
#define NRB_BUFFER_DISOCCLUSION_MASK "disocclusion_mask"
#define NRB_BUFFER_METALLIC "metallic"
#define NRB_BUFFER_ROUGHNESS_METALLIC "roughness_metallic"
#define NRB_BUFFER_NORMALS_OCT "normals_oct"
#define NRB_BUFFER_MATERIAL_ID "material_id"
#define NRB_BUFFER_OBJECT_ID "object_id"
#define NRB_BUFFER_OUTPUT "output" /* RESULT only: the rendered image */
/* Lighting constants (section 6.1): per-frame 1x1 NRB_FORMAT_RGBA32F vendor buffers, xyz / rgb in the first three
 * channels. */
#define NRB_BUFFER_X_SUN_DIRECTION "x_sun_direction"   /* unit vector towards the sun, world space */
#define NRB_BUFFER_X_SUN_IRRADIANCE "x_sun_irradiance" /* the sun's irradiance, linear RGB */
#define NRB_BUFFER_X_SKY_RADIANCE "x_sky_radiance"     /* the sky's radiance, linear RGB */
/* Per-pixel exclusion from re-rendering (NRB_FORMAT_R8 only): 0 = the re-rendered pixel, 255 = the engine's
 * hudless_color pixel exactly, v = v/255 of the engine's image (section 6.1). Needs NRB_BUFFER_HUDLESS_COLOR. */
#define NRB_BUFFER_NEURAL_MASK "neural_mask"
/* The light list (section 6.1): NRB_FORMAT_RGBA32F, 4 texels wide, one row per light. Filled by
 * nrb_frame_set_lights, never tagged by hand; list it in nrb_client_config.buffers to send it. */
#define NRB_BUFFER_X_LIGHTS "x_lights"
#define NRB_BUFFER_NAME_COUNT 30 /* the NRB_BUFFER_* names above (28 in libnrb 0.1.0 before neural_mask, then
                                    29 before x_lights) */

/* The index-th NRB_BUFFER_* name, in the order above (0 <= index < NRB_BUFFER_NAME_COUNT), NULL past the end;
 * static storage. For bindings that re-export the constants (Python, GDScript). Any thread. */
NRB_API const char* nrb_buffer_name(uint32_t index);

/* How pixels travel. The ZeroMQ transport itself (tcp:// or ipc://) is chosen by the endpoint. */
typedef uint32_t nrb_transport;
enum {
  NRB_TRANSPORT_AUTO = 0,   /* offer shared memory when the endpoint is ipc:// or tcp to a loopback address */
  NRB_TRANSPORT_INLINE = 1, /* pixels in ZeroMQ payload frames only */
  NRB_TRANSPORT_SHM = 2     /* offer shared memory (section 7); inline frames when the renderer declines it */
};

/* Per-buffer compression of inline payloads (section 6.3), used only when the renderer accepts it in WELCOME.
 * NONE (0, the default) leaves it to the link: no compression on a local link, LZ4 on a remote one (nrb_link);
 * OFF never compresses, on any link. libnrb compresses a frame only when that is faster than sending it raw (it
 * measures the link and the codec's time, section 6.3), so a fast link gets raw frames whatever is set here.
 * A buffer whose compressed form is not smaller than the raw bytes is sent raw. Never applied to shm buffers.
 * Buffers of 512 KiB or more go in independent chunks when the renderer accepts "chunked" (section 6.3.2). ZSTD
 * also offers lz4, so the renderer may return the image with the faster codec. When the renderer accepts "shuffle"
 * (section 6.3.3), buffers of 2 or more bytes per pixel are split into byte planes before compressing (half-float
 * and float G-buffers shrink to about half of what lz4 or zstd alone leave). */
typedef uint32_t nrb_compression;
enum { NRB_COMPRESSION_NONE = 0, NRB_COMPRESSION_LZ4 = 1, NRB_COMPRESSION_ZSTD = 2, NRB_COMPRESSION_OFF = 3 };

/* Local or remote link (docs/protocol.md section 5.1, "Remote links"). The rule (nrb_endpoint_link): an endpoint is
 * LOCAL when it is ipc:// or inproc://, or tcp:// to a loopback address (127.0.0.0/8, ::1, "localhost"), an
 * unspecified one (0.0.0.0, ::), this host's name (gethostname) or an address of one of this host's interfaces;
 * anything else is REMOTE, a host name included (no DNS lookup: nrb_client_create never waits on the network).
 * On a REMOTE link the client's defaults change, so a plugin gets fewer bytes without encoding anything itself:
 *   - render size: render_width/height 0 means half the output size (rounded up), the renderer upscaling 2x
 *     (a LOCAL link: the output size); the plugin asks nrb_client_get_link which size to render its G-buffers at.
 *     On any link, a buffer tagged at another size than the render size (1x1 constants excepted) is resampled to it
 *     (nearest pixel: depths, ids and normals are never averaged), and a camera's render_width/height and jitter
 *     are rescaled to match, so a plugin that keeps drawing at its own size still sends the smaller buffers;
 *   - compact formats: the engine offers and tags its own formats; libnrb sends float normals (rgba16f, rgba32f) as
 *     NRB_BUFFER_NORMALS_OCT rg16f (octahedral) and depth / linear_depth r32f as r16f, converting as it copies
 *     (nrb_frame_tag_buffer) or at nrb_frame_submit (nrb_frame_acquire_slot), unless exact_formats is set;
 *   - compression: NRB_COMPRESSION_NONE means LZ4 (compressing only the frames where that pays);
 *   - as on every link, buffers the renderer does not ask for in WELCOME are never sent.
 * An engine that configured otherwise keeps its choice: a non-zero render size, exact_formats, a compression other
 * than NONE (OFF: raw frames), or link LOCAL. */
typedef uint32_t nrb_link;
enum {
  NRB_LINK_AUTO = 0,   /* from the endpoint, by the rule above */
  NRB_LINK_LOCAL = 1,  /* no remote defaults */
  NRB_LINK_REMOTE = 2  /* the remote defaults whatever the endpoint (e.g. a loopback tunnel to a far renderer) */
};

/* Which link `endpoint` is by the rule above: *out_link NRB_LINK_LOCAL or NRB_LINK_REMOTE. Any thread; no network
 * traffic (it reads this host's interface addresses). */
NRB_API nrb_status nrb_endpoint_link(const char* endpoint, nrb_link* out_link);

/* nrb_client_config.lossy_codec: the image codec a renderer may return the image in (section 6.3.1). */
enum { NRB_LOSSY_CODEC_JPEG = 0, NRB_LOSSY_CODEC_WEBP = 1 };

/* Event/style targets (section 5.3). */
typedef uint32_t nrb_scope;
enum { NRB_SCOPE_GLOBAL = 0, NRB_SCOPE_MATERIAL = 1, NRB_SCOPE_OBJECT = 2 };

/* The curve that took hudless_color from exposed linear light to what the buffer holds (camera `tone_mapping`,
 * docs/protocol.md section 8), so a renderer can take the engine's image back to linear light. */
typedef uint32_t nrb_tone_mapping;
enum {
  NRB_TONE_MAPPING_UNSET = 0,    /* not stated: not sent (the renderer takes the image as display values) */
  NRB_TONE_MAPPING_NONE = 1,     /* the buffer holds the exposed linear HDR image (rgba16f) */
  NRB_TONE_MAPPING_CLAMP = 2,    /* min(x, 1) */
  NRB_TONE_MAPPING_REINHARD = 3, /* x / (1 + x) per channel */
  NRB_TONE_MAPPING_ACES = 4,     /* Stephen Hill's ACES fit */
  NRB_TONE_MAPPING_AGX = 5,      /* AgX base look */
  NRB_TONE_MAPPING_OTHER = 6     /* a curve not listed: the renderer takes the image as display values */
};
#define NRB_TONE_MAPPING_COUNT 6 /* NRB_TONE_MAPPING_NONE .. NRB_TONE_MAPPING_OTHER */
/* Wire name ("none", "aces", ...), NULL for UNSET or an unknown value; static storage. Any thread. */
NRB_API const char* nrb_tone_mapping_name(nrb_tone_mapping tone_mapping);

typedef uint32_t nrb_log_level;
enum { NRB_LOG_DEBUG = 0, NRB_LOG_INFO = 1, NRB_LOG_WARNING = 2, NRB_LOG_ERROR = 3 };

/* Connection state, as reported in nrb_stats (docs/protocol.md section 5.8). In every state but CONNECTED frames
 * are dropped and nrb_acquire_result says NRB_NO_RESULT: the engine shows its own image. */
typedef uint32_t nrb_connection_state;
enum {
  NRB_STATE_DISABLED = 0,     /* nrb_set_enabled(0): no traffic */
  /* Connecting / waiting for WELCOME / backing off before a retry. A WELCOME that does not come within
   * handshake_timeout_ms is not a refusal: ZeroMQ connects lazily (HELLO is queued before any peer exists), so
   * "no renderer listens there" and "it does not answer" look the same. The client stays CONNECTING, keeps
   * retrying with backoff (reconnect_backoff_min_ms doubling up to reconnect_backoff_max_ms), and
   * nrb_last_error(client) says so: "no WELCOME from <endpoint> within <n> ms (is `nrb serve` running there?);
   * <k> attempts so far, retrying" (k counts the timeouts in a row; the text is cleared when a session starts). */
  NRB_STATE_CONNECTING = 1,
  NRB_STATE_CONNECTED = 2,    /* session established, frames flow */
  /* The renderer refused the session: an ERROR answered HELLO (e.g. BAD_VALUE "buffers: renderer 'deferred' needs
   * buffers ['albedo'], which the engine does not offer", VERSION_UNSUPPORTED, OVERLOADED, LIMIT_EXCEEDED). The
   * connection is closed and the client does not retry by itself (the same HELLO would get the same answer): no
   * traffic until nrb_client_retry(client), or nrb_set_enabled(client, 0) then 1 (the player's toggle), makes it
   * connect again (state CONNECTING; refused again, it comes back here). nrb_last_error(client) holds "the
   * renderer at <endpoint> refused the session: <NAME> (<code>): <message>", and nrb_stats.refusal_code and
   * refusal_message the ERROR's code and message. Disabled while refused: state DISABLED; enabling connects. */
  NRB_STATE_REFUSED = 3
};

/* Called from the client's I/O thread (and sometimes from the calling thread). Must be thread-safe, return
 * quickly and not call back into nrb. `message` is valid only during the call. */
typedef void (*nrb_log_fn)(void* user, nrb_log_level level, const char* message);

/* ------------------------------------------------------------------------------------------------------------ */
/* Client configuration                                                                                         */
/* ------------------------------------------------------------------------------------------------------------ */
/* A buffer the engine can provide (HELLO `buffers`). */
typedef struct nrb_buffer_spec {
  const char* name;  /* section 6.1 name, e.g. "depth", "hudless_color", "x_vendor_thing" */
  nrb_format format;
} nrb_buffer_spec;

typedef struct nrb_client_config {
  uint32_t struct_size;    /* sizeof(nrb_client_config) */
  uint32_t struct_version; /* NRB_CLIENT_CONFIG_VERSION */

  const char* endpoint;       /* ZeroMQ endpoint of the renderer; NULL: "tcp://127.0.0.1:5555" */
  nrb_transport transport;    /* default NRB_TRANSPORT_AUTO */
  /* 0 (recommended): adaptive, 1..4: one frame in flight while the renderer is the bottleneck, more while the
   * link is (docs/protocol.md section 5.9); nrb_stats.in_flight_limit shows the current choice. 1..64: that many,
   * always. Either way further limited by the renderer's max_in_flight. */
  uint32_t frames_in_flight;
  double deadline_ms;         /* 0: 100. A result older than this (from submit) is never shown */
  uint32_t connect_timeout_ms;   /* 0: 1000. TCP connect / wait for the first writable moment */
  uint32_t handshake_timeout_ms; /* 0: 1000. HELLO -> WELCOME */
  uint32_t server_timeout_ms;    /* 0: 2000. Silence (no message, no PONG) while expecting one -> reconnect */
  uint32_t ping_interval_ms;     /* 0: 500. PING when idle for this long */
  uint32_t reconnect_backoff_min_ms; /* 0: 50. First retry delay; doubles per failure ... */
  uint32_t reconnect_backoff_max_ms; /* 0: 2000. ... up to this */

  /* CurveZMQ (all three, Z85 text of 40 characters, or all NULL for a plain connection). Copied. */
  const char* curve_server_public_key;
  const char* curve_client_public_key;
  const char* curve_client_secret_key;

  nrb_log_fn log_fn;        /* optional */
  void* log_user;           /* passed to log_fn */
  nrb_log_level log_level;  /* messages below this level are not reported; default NRB_LOG_DEBUG (0) */

  const char* engine_name;    /* HELLO `engine`; NULL: "unknown" */
  const char* engine_version; /* HELLO `engine_version`; NULL: "" */

  /* Size of the G-buffers, 1..16384; 0x0: the link's default (nrb_link: the output size, or half of it on a remote
   * link), which needs the output size. */
  uint32_t render_width, render_height;
  uint32_t output_width, output_height; /* size of the image wanted back; 0: the render size */

  /* Buffers the engine will tag (HELLO `buffers`), at most 32. They also size the shared-memory slots: a slot
   * holds every listed buffer at the render size with a tight, 64-byte-aligned stride plus the output image.
   * Copied during nrb_client_create. */
  const nrb_buffer_spec* buffers;
  uint32_t buffer_count;

  nrb_compression compression; /* default NONE: the link's (none locally, LZ4 on a remote link); OFF: never */
  int32_t compression_level;   /* 0: the library default (lz4: 0 = fast, zstd: 1) */

  uint32_t shm_slots;          /* 0: 2 * frames_in_flight + 4 slots (adaptive: frames_in_flight counts as 4); 1..256 */
  uint32_t start_disabled;     /* non-zero: the client starts disabled (no traffic until nrb_set_enabled(1)) */

  /* struct_version 2 */
  /* HELLO `renderer` (docs/protocol.md section 5.11): the renderer (and model) wanted, e.g. "neural" or
   * "onnx:toon.onnx"; a server or cluster without it refuses (REFUSED, refusal_code 15 UNSUPPORTED). NULL or "":
   * any. Copied. */
  const char* renderer;
  /* 0 (default): every returned image is exact. 1..100: the renderer may return the image as JPEG (or WebP, see
   * lossy_codec) at this quality (HELLO `lossy_output`, section 6.3.1; 90 is a good choice for a slow link); libnrb
   * decodes it. Only rgba8 / rgba8_srgb images; never through shared memory. */
  uint32_t lossy_quality;

  /* struct_version 3 (a caller of an older version gets link LOCAL: no remote defaults) */
  nrb_link link;          /* default NRB_LINK_AUTO: the endpoint decides (see nrb_link) */
  uint32_t exact_formats; /* non-zero: buffers travel in the formats tagged, also on a remote link */
  /* the codec of lossy_quality: NRB_LOSSY_CODEC_JPEG (0, default; libjpeg-turbo) or NRB_LOSSY_CODEC_WEBP (libwebp:
   * smaller at the same FLIP, slower to encode and decode, bench/remote.md) */
  uint32_t lossy_codec;
} nrb_client_config;

/* Fills `config` with defaults (zeros) and sets struct_size/struct_version. Any thread. */
NRB_API void nrb_client_config_init(nrb_client_config* config);

/* ------------------------------------------------------------------------------------------------------------ */
/* Client lifetime                                                                                              */
/* ------------------------------------------------------------------------------------------------------------ */
typedef struct nrb_client nrb_client; /* opaque */

/* Creates a client and starts its I/O thread, which connects in the background (this call does not wait for
 * the renderer; frames submitted before the handshake completes are dropped and the engine falls back).
 * `config` and everything it points to are copied. On success *out_client owns the client; destroy it with
 * nrb_client_destroy. On failure *out_client is NULL and nrb_last_error(NULL) explains. Any thread. */
NRB_API nrb_status nrb_client_create(const nrb_client_config* config, nrb_client** out_client);

/* The client's link (nrb_link: LOCAL or REMOTE, after the rule) and the render size its sessions use (the G-buffer
 * size to render at: the configured one, or the link's default). Each out pointer may be NULL. Fixed for the
 * client's life. Any thread. */
NRB_API nrb_status nrb_client_get_link(const nrb_client* client, nrb_link* out_link, uint32_t* out_render_width,
                                       uint32_t* out_render_height);

/* Says BYE (best effort, without waiting), stops the I/O thread and frees everything, including results still
 * held: every pointer obtained from the client becomes invalid. NULL is a no-op. Must not race with any other call
 * on the same client. Returns within about one poll interval (a few ms). */
NRB_API void nrb_client_destroy(nrb_client* client);

/* ------------------------------------------------------------------------------------------------------------ */
/* Building and submitting a frame (render thread)                                                              */
/* ------------------------------------------------------------------------------------------------------------ */
typedef struct nrb_frame_info {
  uint32_t struct_size;    /* sizeof(nrb_frame_info) */
  uint32_t struct_version; /* NRB_FRAME_INFO_VERSION */
  double dt;               /* seconds since the previous frame, up to 10; 0 or negative: measured by the library */
  double deadline_ms;      /* 0: the configured deadline */
} nrb_frame_info;

/* Begins a new frame (abandoning one begun but not submitted). `info` may be NULL (dt measured, default
 * deadline). *out_frame_id (may be NULL) receives the frame id, strictly increasing over the client's life; result
 * ages are counted in these ids. Render thread. Microseconds. */
NRB_API nrb_status nrb_frame_begin(nrb_client* client, const nrb_frame_info* info, uint64_t* out_frame_id);

/* *out_live = 1 when the frame begun last (and not yet submitted) will be sent, 0 when it will not: the client is
 * disabled or not connected, or it holds frames back from a renderer too slow for the deadline (docs/protocol.md
 * section 5.9, engine rule 5). With 0 an engine may skip reading its G-buffers back and tagging them: nothing of
 * them would be used (nrb_frame_tag_buffer already skips its copy; memory from nrb_frame_acquire_slot is not sent).
 * Events and style commands are kept either way. 0 also when no frame is begun. Render thread. */
NRB_API nrb_status nrb_frame_get_live(const nrb_client* client, int* out_live);

/* Flags of nrb_buffer_desc. */
enum { NRB_BUFFER_DEPTH_REVERSED = 1u << 0, NRB_BUFFER_DEPTH_INFINITE = 1u << 1 };

typedef struct nrb_buffer_desc {
  uint32_t struct_size;    /* sizeof(nrb_buffer_desc) */
  uint32_t struct_version; /* NRB_BUFFER_DESC_VERSION */
  const char* name;        /* section 6.1 name; unique within a frame */
  nrb_format format;
  uint32_t width, height;  /* 1..16384 */
  uint32_t stride;         /* bytes per row of `data`; 0: width * bytes per pixel */
  const void* data;        /* nrb_frame_tag_buffer: the pixels, top row first; ignored by acquire_slot */
  uint32_t flags;          /* NRB_BUFFER_* */
} nrb_buffer_desc;

/* Tags one G-buffer of the current frame. The pixels are copied before the call returns (into a shared-memory
 * slot when shm was negotiated, otherwise into a library-owned staging buffer that is sent without a further
 * copy); `desc` and `desc->data` may be reused immediately. Tagging the same name twice replaces it. When the
 * client is disabled or not connected, or while it holds frames back from a renderer too slow for the deadline
 * (docs/protocol.md section 5.9, engine rule 5: one frame per render time is sent), the copy is skipped (the frame
 * will not be sent). Render thread. Costs one memcpy of the buffer. */
NRB_API nrb_status nrb_frame_tag_buffer(nrb_client* client, const nrb_buffer_desc* desc);

/* Zero-copy alternative to nrb_frame_tag_buffer: reserves space for buffer `desc` (data ignored; stride 0 means
 * tight) in the current frame and returns where the engine writes the pixels: *out_data, with rows *out_stride
 * bytes apart (>= desc->stride; 64-byte aligned start). On the shared-memory path this points into the slot the
 * renderer will read; otherwise into the staging buffer that is sent as is. The pointer is valid until
 * nrb_frame_submit or the next nrb_frame_begin, whichever comes first. Render thread. */
NRB_API nrb_status nrb_frame_acquire_slot(nrb_client* client, const nrb_buffer_desc* desc, void** out_data,
                                          uint32_t* out_stride);

/* Camera constants, docs/protocol.md section 8. Matrices are row-major for column vectors, without jitter.
 * Which keys are sent: a matrix that is all zeros, a zero up/right/forward vector, and near, far, fov_y, aspect,
 * pre_exposure, render size or output size equal to 0 are omitted; position, jitter, mv_scale and every flag are
 * always sent. far may be +INFINITY. pre_exposure (> 0) and tone_mapping (struct_version 2) say how hudless_color
 * was made: the engine's linear image times pre_exposure through tone_mapping. A struct_version 1 camera sends no
 * tone_mapping. */
typedef struct nrb_camera {
  uint32_t struct_size;    /* sizeof(nrb_camera) */
  uint32_t struct_version; /* NRB_CAMERA_VERSION */
  double view_to_clip[16];
  double clip_to_view[16];
  double clip_to_prev_clip[16];
  double prev_clip_to_clip[16];
  double world_to_view[16];
  double position[3];
  double up[3];
  double right[3];
  double forward[3];
  double near_plane;
  double far_plane;
  double fov_y;      /* radians */
  double aspect;     /* width / height */
  double jitter[2];  /* pixels */
  double mv_scale[2];
  uint8_t depth_inverted;
  uint8_t depth_infinite;
  uint8_t mv_jittered;
  uint8_t mv_3d;
  uint8_t mv_dilated;
  uint8_t camera_motion_included;
  uint8_t orthographic;
  uint8_t reset;
  double pre_exposure;       /* 0: not sent (the renderer assumes 1); negative: NRB_ERROR_INVALID_ARGUMENT */
  uint32_t render_width, render_height;
  uint32_t output_width, output_height;
  /* -- struct_version 2 -- */
  nrb_tone_mapping tone_mapping; /* NRB_TONE_MAPPING_UNSET (0): not sent; past OTHER: NRB_ERROR_INVALID_ARGUMENT */
} nrb_camera;

/* Zeroes `camera` and sets struct_size/struct_version. Any thread. */
NRB_API void nrb_camera_init(nrb_camera* camera);

/* Sets the current frame's camera (copied; values are validated: NaN, far <= near, fov_y outside (0, pi) ... are
 * NRB_ERROR_INVALID_ARGUMENT). Render thread. */
NRB_API nrb_status nrb_frame_set_camera(nrb_client* client, const nrb_camera* camera);

/* The engine's punctual lights (docs/protocol.md section 6.1, `x_lights`): an optional hint, sent each frame, that a
 * renderer shading from the G-buffers (the `deferred` baseline) lights the image with. The main directional light
 * (the sun) goes in the lighting constants (NRB_BUFFER_X_SUN_DIRECTION, _X_SUN_IRRADIANCE), not in this list: the
 * lights here add to it. Units: protocol world space; `color` is linear RGB times intensity in the radiometry of
 * x_sun_irradiance: a point or spot light's radiant intensity I (a surface facing it at distance d receives the
 * irradiance I / d^2, and a white Lambertian one shows the radiance I / (pi d^2) in the units of emissive), a
 * directional light's irradiance E. */
typedef uint32_t nrb_light_type;
enum { NRB_LIGHT_POINT = 0, NRB_LIGHT_SPOT = 1, NRB_LIGHT_DIRECTIONAL = 2 };
#define NRB_MAX_LIGHTS 64 /* lights per frame */

typedef struct nrb_light {
  uint32_t struct_size;    /* sizeof(nrb_light); also the array's stride in nrb_frame_set_lights */
  uint32_t struct_version; /* NRB_LIGHT_VERSION */
  nrb_light_type type;     /* NRB_LIGHT_POINT, _SPOT or _DIRECTIONAL */
  float position[3];       /* point, spot: world space */
  float direction[3];      /* spot, directional: unit vector the light shines along (the spot's axis; for a
                              directional light the opposite of x_sun_direction's "towards the light") */
  float color[3];          /* linear RGB x intensity, each >= 0 (see above) */
  float range;             /* world units: the light fades to 0 there (window clamp(1 - (d/range)^4, 0, 1)^2);
                              0: no window, inverse square only. >= 0 */
  float inner_cone;        /* spot: half-angle of full intensity, radians, 0 <= inner_cone <= outer_cone */
  float outer_cone;        /* spot: half-angle where it reaches 0 (smoothstep between), 0 < outer_cone <= pi */
} nrb_light;

/* Zeroes `light`, sets struct_size/struct_version and a unit direction (0, -1, 0). Any thread. */
NRB_API void nrb_light_init(nrb_light* light);

/* Sets the current frame's light list: `count` lights (0..NRB_MAX_LIGHTS) at `lights`, each struct_size bytes after
 * the previous (the first light's struct_size; every light has the same). The library checks them as a renderer
 * would (NRB_ERROR_INVALID_ARGUMENT, nrb_last_error(client) naming "lights[i].field": an unknown type, a non-finite
 * value, a negative colour channel or range, a spot or directional direction whose length is not 1 within 0.001,
 * a spot outer cone outside (0, pi] or an inner one outside [0, outer]; more than NRB_MAX_LIGHTS:
 * NRB_ERROR_LIMIT_EXCEEDED), packs them into the NRB_BUFFER_X_LIGHTS buffer (copied: `lights` may be reused at
 * once) and tags it; a failed call leaves the frame as it was. count 0 sends no list this frame (and removes one
 * set earlier in the frame). The renderer receives it only when the HELLO offered NRB_BUFFER_X_LIGHTS
 * (nrb_client_config.buffers, NRB_FORMAT_RGBA32F) and its WELCOME asks for it. Render thread. */
NRB_API nrb_status nrb_frame_set_lights(nrb_client* client, const nrb_light* lights, uint32_t count);

/* Submits the current frame and returns at once: the I/O thread sends it when fewer than frames_in_flight frames
 * are outstanding. If a newer frame is submitted before this one could be sent, this one is dropped (counted in
 * frames_dropped; its events and styles move to the next frame actually sent). Frames submitted while disabled or
 * disconnected, and those held back from a renderer too slow for the deadline (nrb_frame_get_live 0), are dropped
 * the same way. Render thread. Microseconds. */
NRB_API nrb_status nrb_frame_submit(nrb_client* client);

/* ------------------------------------------------------------------------------------------------------------ */
/* Gameplay events and styles (any thread)                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */
typedef struct nrb_target {
  nrb_scope scope;     /* NRB_SCOPE_GLOBAL: ids must be empty; MATERIAL/OBJECT: 1..1024 ids */
  const uint32_t* ids; /* copied */
  uint32_t id_count;
} nrb_target;

/* Queues a gameplay event. It rides on the first frame submitted after this call that is actually sent (so an
 * event fired between nrb_frame_begin and nrb_frame_submit belongs to that frame). `params` is a msgpack map with
 * str keys (section 3.2: depth <= 8, <= 4096 bytes), e.g. 0x80 for the empty map; NULL/0 means the empty map. It is
 * validated and copied. `target` NULL means global. Delivery: events stay queued, in order, until the renderer
 * answers (RESULT or ERROR) a frame that carried them; frames lost to a disconnect or a renderer restart have
 * their events re-sent on the next frame of the new session, so each event reaches a restarted renderer once and in
 * order. While disabled, events accumulate (up to 65536; older ones are then discarded and counted in
 * events_discarded). Any thread; microseconds. */
NRB_API nrb_status nrb_fire_event(nrb_client* client, const char* name, const void* params, size_t params_size,
                                  const nrb_target* target);

/* ------------------------------------------------------------------------------------------------------------ */
/* Typed event parameters (any thread)                                                                          */
/* ------------------------------------------------------------------------------------------------------------ */
/* An event's params are a map with str keys (docs/protocol.md section 3.2 `value`). nrb_params builds one without
 * any msgpack in the caller: the library encodes it canonically (section 3.1) as it is built.
 *
 *     nrb_params* p = NULL;
 *     nrb_params_create(&p);
 *     nrb_params_set_float(p, "power", 2.5);
 *     nrb_params_set_string(p, "weapon", "laser");
 *     nrb_params_begin_array(p, "hits");              // nested containers: begin_map / begin_array ... end
 *     nrb_params_set_int(p, NULL, 42);                //   values inside an array have no key (NULL)
 *     nrb_params_end(p);
 *     nrb_fire_event_params(client, "weapon_powerup", p, NULL);
 *     nrb_params_destroy(p);                          // or nrb_params_clear(p) and reuse it
 *
 * Rules, each checked at the call that breaks it (which then changes nothing: the builder stays as it was):
 *   - inside a map (the params themselves, or a begin_map) every value needs a key: non-NULL, valid UTF-8, not
 *     already set in that map (else NRB_ERROR_INVALID_ARGUMENT); inside an array `key` must be NULL (else
 *     NRB_ERROR_INVALID_ARGUMENT). Strings are valid UTF-8 (else NRB_ERROR_INVALID_ARGUMENT).
 *   - nesting: the params map is depth 1, each begin_map/begin_array adds one; a container at depth 9 is
 *     NRB_ERROR_LIMIT_EXCEEDED (section 3.2: depth <= 8).
 *   - size: a call after which the params would encode to more than 4096 bytes is NRB_ERROR_LIMIT_EXCEEDED.
 *   - nrb_params_end with no open container, and using params with containers still open (nrb_params_data,
 *     nrb_fire_event_params), are NRB_ERROR_INVALID_STATE.
 * Errors are described by nrb_last_error(NULL) on the calling thread. Ownership: the caller owns the nrb_params and
 * everything it passes in (copied); the library owns nothing of it after nrb_params_destroy. A builder may be used
 * by one thread at a time; nrb_fire_event_params copies it, so it may be changed or destroyed right after. */
typedef struct nrb_params nrb_params; /* opaque */

/* Creates an empty params map. *out_params is NULL on failure. */
NRB_API nrb_status nrb_params_create(nrb_params** out_params);
/* Frees the builder; NULL is a no-op. */
NRB_API void nrb_params_destroy(nrb_params* params);
/* Empties the builder (no keys, no open containers), keeping its memory for reuse. */
NRB_API nrb_status nrb_params_clear(nrb_params* params);

NRB_API nrb_status nrb_params_set_nil(nrb_params* params, const char* key);
NRB_API nrb_status nrb_params_set_bool(nrb_params* params, const char* key, int value); /* non-zero: true */
NRB_API nrb_status nrb_params_set_int(nrb_params* params, const char* key, int64_t value);
NRB_API nrb_status nrb_params_set_uint(nrb_params* params, const char* key, uint64_t value);
NRB_API nrb_status nrb_params_set_float(nrb_params* params, const char* key, double value); /* sent as float64 */
/* `value`: NUL-terminated UTF-8. */
NRB_API nrb_status nrb_params_set_string(nrb_params* params, const char* key, const char* value);
/* `size` bytes of UTF-8 at `value` (may contain NUL; NULL only with size 0). */
NRB_API nrb_status nrb_params_set_string_n(nrb_params* params, const char* key, const char* value, size_t size);
/* A byte blob (msgpack bin); `data` NULL only with size 0. */
NRB_API nrb_status nrb_params_set_bytes(nrb_params* params, const char* key, const void* data, size_t size);
/* Opens a nested map / array as the value of `key` (NULL inside an array); later values go into it until the
 * matching nrb_params_end. */
NRB_API nrb_status nrb_params_begin_map(nrb_params* params, const char* key);
NRB_API nrb_status nrb_params_begin_array(nrb_params* params, const char* key);
/* Closes the innermost open map or array. */
NRB_API nrb_status nrb_params_end(nrb_params* params);

/* The canonical msgpack encoding of the params (what nrb_fire_event takes): *out_data stays valid and unchanged
 * until the next call that changes or destroys `params`. For tools and tests; engines call nrb_fire_event_params. */
NRB_API nrb_status nrb_params_data(const nrb_params* params, const void** out_data, size_t* out_size);

/* nrb_fire_event with typed params: `params` NULL means the empty map. Same delivery rules as nrb_fire_event. */
NRB_API nrb_status nrb_fire_event_params(nrb_client* client, const char* name, const nrb_params* params,
                                         const nrb_target* target);

/* Queues a style command (same delivery rules as events): move `target` toward style `style` (1..64 bytes) with
 * `strength` in [0, 1] over `over_seconds` in [0, 3600] (0 = immediately). Any thread; microseconds. */
NRB_API nrb_status nrb_set_style(nrb_client* client, const char* style, double strength, double over_seconds,
                                 const nrb_target* target);

/* A style written by game logic (docs/protocol.md section 5.3, "Styles defined at run time"): defines (or
 * redefines) style `style` with the parameter set `params`, then moves `target` toward it as nrb_set_style does.
 * `params` is built with nrb_params: a float for each parameter (nrb_params_set_float or _int), an array of 3 floats
 * for an RGB one (nrb_params_begin_array(p, "gain"); three nrb_params_set_float(p, NULL, v); nrb_params_end(p)), and
 * nrb_params_set_string for "lut" (a style of the renderer whose .cube LUT to apply) and "base" (the preset drawn
 * under the grading), e.g.
 *     nrb_params_set_float(p, "hue", 35.0);
 *     nrb_params_set_float(p, "saturation", 0.6);
 *     nrb_set_style_params(client, "poison", p, 1.0, 0.5, NULL);
 * Checked here (NRB_ERROR_INVALID_ARGUMENT, nrb_last_error(client) naming the key): the value shapes of section
 * 5.3 (numbers, 3 numbers, strings for lut/base, keys 1..64 bytes); more than 32 entries is NRB_ERROR_LIMIT_EXCEEDED.
 * Parameter names and ranges are the renderer's (docs/server.md, bridge.style.library.PARAM_SPECS): an unknown one
 * or a value out of range is answered with ERROR BAD_VALUE naming the parameter and its range, that frame is not
 * rendered (its events and commands are not applied) and the next frames render as before. `params` NULL is an
 * empty set (every parameter neutral). The params are copied. Any thread; microseconds. */
NRB_API nrb_status nrb_set_style_params(nrb_client* client, const char* style, const nrb_params* params,
                                        double strength, double over_seconds, const nrb_target* target);

/* Post controls (docs/protocol.md section 5.3 `controls`), per session, delivered like style commands. They need
 * the engine's hudless_color in each frame (without it the renderer shows the re-rendered image as is). */
/* Intensity: how much of the re-rendered image is shown over the engine's own, `value` in [0, 1] (0: the engine's
 * image exactly, 1: fully re-rendered, the default), reached over `over_seconds` in [0, 3600]. */
NRB_API nrb_status nrb_set_intensity(nrb_client* client, double value, double over_seconds);
/* Excludes (`excluded` non-zero) or includes again (0) the objects or materials of `target` from re-rendering:
 * their pixels keep the engine's image, with a soft edge. target NULL or global with excluded 0 includes every id
 * again; global with excluded non-zero is NRB_ERROR_INVALID_ARGUMENT (use nrb_set_intensity(client, 0, 0)).
 * The per-pixel form is the NRB_BUFFER_NEURAL_MASK buffer. */
NRB_API nrb_status nrb_exclude(nrb_client* client, const nrb_target* target, int excluded);

/* ------------------------------------------------------------------------------------------------------------ */
/* Results                                                                                                      */
/* ------------------------------------------------------------------------------------------------------------ */
typedef struct nrb_result {
  uint32_t struct_size;    /* sizeof(nrb_result) */
  uint32_t struct_version; /* NRB_RESULT_VERSION */
  uint64_t frame_id;       /* the frame this image was rendered from */
  uint64_t age_frames;     /* latest begun frame id - frame_id */
  const void* pixels;      /* top row first; valid until nrb_release_result (or nrb_client_destroy) */
  uint32_t width, height;
  uint32_t stride;         /* bytes per row */
  nrb_format format;
  double round_trip_ms;    /* submit -> result received */
  double server_ms;        /* the renderer's timing.total_ms */
} nrb_result;

/* Gets the newest rendered image that is still within its deadline (submit time + deadline_ms >= now).
 * NRB_OK: *out_result is filled and the pixels stay valid (and unchanged) until nrb_release_result; the same image
 * may be acquired again on later frames while it is the newest fresh one (age_frames tells), also while the client
 * reconnects after a lost connection. NRB_NO_RESULT: none fresh (disabled, not connected for longer than a deadline,
 * renderer behind, result late): the engine shows its own image; counted in `fallbacks` while enabled. Never blocks. Any thread. Every NRB_OK must be matched by one nrb_release_result. */
NRB_API nrb_status nrb_acquire_result(nrb_client* client, nrb_result* out_result);

/* Releases a result obtained from nrb_acquire_result (identified by result->frame_id). Any thread. */
NRB_API nrb_status nrb_release_result(nrb_client* client, const nrb_result* result);

/* ------------------------------------------------------------------------------------------------------------ */
/* Control and statistics (any thread)                                                                          */
/* ------------------------------------------------------------------------------------------------------------ */
/* Enables or disables neural rendering at run time (the player's toggle). Disabling takes effect at once: later
 * submits are dropped, acquire returns NRB_NO_RESULT, no further FRAME or PING is sent, and once the frames already
 * in flight are answered (or time out) the client says BYE and closes its connection and shared memory. Enabling
 * reconnects in the background and resumes; queued events are delivered on the first frame of the new session.
 * Disabling then enabling a client in NRB_STATE_REFUSED asks the renderer again (as nrb_client_retry does). */
NRB_API nrb_status nrb_set_enabled(nrb_client* client, int enabled);
/* *out_enabled = 1 or 0. */
NRB_API nrb_status nrb_get_enabled(const nrb_client* client, int* out_enabled);
/* *out_sending = 1 when a frame begun now would be sent, 0 when it would not (disabled, not connected, or holding
 * frames back from a renderer too slow for the deadline: docs/protocol.md section 5.9, engine rule 5); what
 * nrb_frame_get_live would then say of it. For an engine whose G-buffer readback completes frames later, or on
 * another thread than the one that builds frames: it asks before starting the readback and skips it on 0. Any
 * thread. */
NRB_API nrb_status nrb_get_sending(const nrb_client* client, int* out_sending);

/* Leaves NRB_STATE_REFUSED and connects again in the background (state CONNECTING, then CONNECTED, or REFUSED
 * again with the renderer's new answer), e.g. after the player or the server's operator fixed what the refusal
 * named. In any other state (DISABLED included) a no-op that returns NRB_OK. Any thread; returns at once. */
NRB_API nrb_status nrb_client_retry(nrb_client* client);

typedef struct nrb_stats {
  uint32_t struct_size;    /* sizeof(nrb_stats) */
  uint32_t struct_version; /* NRB_STATS_VERSION */
  uint64_t frames_submitted;  /* nrb_frame_submit calls */
  uint64_t frames_sent;       /* FRAMEs written to the socket */
  uint64_t frames_dropped;    /* submitted frames never sent (superseded, disabled, disconnected, held back) */
  uint64_t results_received;  /* RESULTs with pixels (on time or late) */
  uint64_t results_late;      /* RESULTs that came after their deadline, or "skipped" by the renderer */
  uint64_t frames_lost;       /* sent frames never answered (connection lost / renderer restarted) */
  uint64_t errors_received;   /* ERROR messages from the renderer */
  uint64_t fallbacks;         /* nrb_acquire_result calls that returned NRB_NO_RESULT while enabled */
  uint64_t events_sent;       /* events + style commands acknowledged by the renderer */
  uint64_t events_pending;    /* events + style commands queued or in flight */
  uint64_t events_discarded;  /* dropped because the queue overflowed */
  uint64_t bytes_sent;        /* all frames of all messages, as written (compressed sizes) */
  uint64_t bytes_received;
  uint64_t reconnects;        /* handshakes after the first */
  uint64_t in_flight;         /* frames sent and not yet answered */
  double rtt_p50_ms, rtt_p95_ms, rtt_p99_ms; /* submit -> RESULT, over the last 1024 results; 0 when none */
  nrb_connection_state state;
  uint32_t shm_active;        /* 1 when the current session uses shared memory */
  uint32_t compression_active;/* the nrb_compression in use for the current session */
  uint64_t session;           /* current session id, 0 when none */
  /* -- struct_version 2 -- */
  uint32_t doorbell_active;   /* 1 when frame headers and results travel through the doorbell FIFOs (protocol 7.1) */
  /* -- struct_version 3 -- */
  /* The last refusal (NRB_STATE_REFUSED): set when an ERROR answers HELLO, kept while the state is REFUSED (and
   * while a retry is connecting), cleared when a session is established. */
  int32_t refusal_code;       /* the refusing ERROR's protocol code (docs/protocol.md section 9, e.g. 6 = BAD_VALUE
                                 for buffers the renderer needs and the engine does not offer); 0 when none. A code
                                 above INT32_MAX reads INT32_MAX */
  char refusal_message[256];  /* its `message`, NUL-terminated, cut to at most 255 bytes without splitting a UTF-8
                                 sequence; "" when none */
  /* -- struct_version 4 -- */
  uint32_t in_flight_limit;   /* frames the client lets be outstanding now: the adaptive choice (frames_in_flight 0),
                                 or the configured count; both capped by the renderer's max_in_flight */
  /* -- struct_version 5 -- */
  /* Where a frame's round trip goes, from the renderer's answers (0 until one has timing): what an engine's debug
   * overlay shows, and what the adaptive frames-in-flight limit is computed from (docs/protocol.md 5.9). */
  double service_ms;          /* the renderer's time per frame: moving average (weight 0.2) of timing.total_ms -
                                 timing.queue_ms, i.e. without waiting behind other frames or sessions */
  double link_ms;             /* the fastest recent transport time: send -> RESULT received - timing.total_ms */
} nrb_stats;

/* Fills *out_stats (set struct_size/struct_version first). A caller built against an older version gets the
 * fields of its struct_version, and nothing is written past them. Any thread. */
NRB_API nrb_status nrb_get_stats(const nrb_client* client, nrb_stats* out_stats);

/* The text of the last error reported by a function of `client` or by its connection (a refusal, a WELCOME that
 * did not come: see NRB_STATE_CONNECTING and NRB_STATE_REFUSED; newest wins; a connection's text is cleared when a
 * session is established), or, for client NULL, by nrb_client_create or an nrb_params_* function on this thread;
 * "" when none. The pointer is thread-local storage of the calling thread, valid until its next call
 * of nrb_last_error. Any thread. */
NRB_API const char* nrb_last_error(const nrb_client* client);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NRB_NRB_H */
