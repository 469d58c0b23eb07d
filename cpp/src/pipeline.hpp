// The client's frame and event bookkeeping, free of sockets and threads so that its rules can be tested directly:
//
//  * at most `frames_in_flight` frames (further limited by the renderer's max_in_flight) are outstanding; with
//    frames_in_flight 0 (the default) the limit adapts (see Options::frames_in_flight and docs/protocol.md 5.9);
//  * one submitted-but-unsent frame waits at most: a newer submit drops it ("the oldest unsent frame is dropped");
//  * a result is shown only while `now <= submit time + deadline`; one that arrives later is counted late;
//  * events and style commands stay queued, in order, until the renderer answers a frame that carried them; a
//    dropped frame never took them, a lost frame (connection gone, NO_SESSION) gives them back, so they ride on
//    the next frame actually sent;
//  * disabled: nothing is sent, nothing is shown;
//  * refused (an ERROR answered HELLO): nothing is sent until the engine asks again (toggle or retry); the
//    renderer's code and message stay readable until a session starts.
//
// Thread-safe: the render thread (begin/submit/acquire), game threads (events) and the I/O thread (take_next,
// on_result, ...) call it concurrently; every method holds one internal mutex for a few microseconds at most.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "latency_window.hpp"
#include "protocol.hpp"
#include "shm_pool.hpp"

namespace nrb::detail {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

inline double ms_between(TimePoint a, TimePoint b) noexcept {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Keeps one frame's pixel memory alive: staging blocks (inline buffers) and/or a shared-memory slot lease.
struct FrameResources {
  std::vector<std::shared_ptr<void>> blocks;
  std::shared_ptr<SlotPool::Lease> slot;
};

// A frame as the render thread hands it over.
struct SubmittedFrame {
  uint64_t id = 0;
  uint64_t time_ns = 0;      // engine monotonic time at begin
  double dt = 0.0;
  double deadline_ms = 0.0;  // 0: the pipeline's default
  std::optional<wire::Camera> camera;
  std::vector<wire::BufferDesc> buffers;  // inline: data/size into `resources`; shm: `shm` refs into `pool`
  std::optional<uint64_t> result_slot;
  std::shared_ptr<SlotPool> pool;         // the pool the shm refs point into; null when none are used
  std::shared_ptr<FrameResources> resources;
  // Built while the client could send (Pipeline::begin().live). A frame begun offline carries no pixels (the
  // copies were skipped), so it is never sent, even if a session comes up before it is submitted.
  bool live = true;

  // Set by Pipeline::submit.
  TimePoint submit_time{};
  uint64_t watermark = 0;  // events/styles queued before submit (sequence numbers <= watermark) belong to it
};

// What the I/O thread sends: the frame plus the events and styles that ride on it.
struct OutgoingFrame {
  SubmittedFrame frame;
  uint64_t session = 0;
  std::vector<wire::Event> events;
  std::vector<wire::StyleCommand> styles;
  std::vector<wire::Control> controls;
};

// A rendered image ready for the engine. `keepalive` owns the memory `pixels` points into (received ZeroMQ
// frames, decompressed bytes or the frame's shared-memory slot).
struct ResultImage {
  uint64_t frame_id = 0;
  const uint8_t* pixels = nullptr;
  uint32_t width = 0, height = 0;
  uint64_t stride = 0;
  wire::Format format = wire::Format::rgba8;
  double round_trip_ms = 0.0;
  double server_ms = 0.0;
  TimePoint submit_time{};
  double deadline_ms = 0.0;
  std::shared_ptr<void> keepalive;                    // received frames / decompressed bytes
  std::shared_ptr<FrameResources> frame_resources;    // set by on_result: the frame's slot, when pixels live there
};

// The renderer's timing of one answer (RESULT `timing`), for the adaptive in-flight limit.
struct ServerTiming {
  double queue_ms = 0.0;  // received -> dequeued (waiting behind other frames)
  double total_ms = 0.0;  // received -> sent
  // How long this frame's bytes hold the link's busier direction (the larger of frame and image bytes at the
  // measured link throughput); 0: unknown (shared memory, too few bytes to measure). Set by the I/O thread.
  double link_busy_ms = 0.0;
  // The busier direction's share of this frame's bytes on the link: max(frame, image) / (frame + image), 0.5..1;
  // 0: unknown. Set by the I/O thread with link_busy_ms: what link time that busy time implies.
  double link_share = 0.0;
};

struct PipelineStats {
  uint64_t frames_submitted = 0, frames_sent = 0, frames_dropped = 0, results_received = 0, results_late = 0,
           frames_lost = 0, errors_received = 0, fallbacks = 0, events_sent = 0, events_pending = 0,
           events_discarded = 0, bytes_sent = 0, bytes_received = 0, reconnects = 0, in_flight = 0, session = 0;
  double rtt_p50_ms = 0, rtt_p95_ms = 0, rtt_p99_ms = 0;
  bool enabled = true;
  bool shm_active = false;
  bool doorbell_active = false;
  uint32_t compression = 0;  // wire::Compression of the current session
  uint32_t in_flight_limit = 0;  // frames the client lets be outstanding now (adaptive or configured)
  double service_ms = 0, link_ms = 0;  // the renderer's service time and the link time (moving, see adapt_locked)
  bool refused = false;      // the renderer refused the session and the client waits to be told to ask again
  int32_t refusal_code = 0;  // the refusing ERROR's code (protocol section 9); 0 when none since the last session
  std::string refusal_message;  // and its message
};

class Pipeline {
 public:
  struct Options {
    // 1..64: a fixed limit. 0: adaptive, between 1 and `adaptive_max` (and the renderer's max_in_flight): one frame
    // in flight while the renderer is the bottleneck, more while the link is. From each answered frame the pipeline
    // keeps moving averages of the renderer's service time S (timing total_ms - queue_ms: what one frame occupies
    // the renderer) and of the link L (send -> RESULT received, minus total_ms: transport both ways). A frame in
    // flight keeps the renderer busy for S out of every S + L, so ceil((S + L) / S) frames would keep it busy all
    // the time; every extra frame beyond what the link hides only waits in the renderer's queue (latency, no
    // throughput). The limit is 1 + floor(L / S + 0.5): a second frame only once the link costs at least half a
    // render. It starts at 1 for each session and needs `adaptive_samples` answers before it moves.
    uint32_t frames_in_flight = 0;
    uint32_t adaptive_max = 4;
    uint32_t adaptive_samples = 4;
    double deadline_ms = 100.0;
    size_t max_pending_events = 65536;  // events + styles; beyond it the oldest unsent are discarded
    bool start_enabled = true;
  };

  explicit Pipeline(Options opts);
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Called (without the pipeline's lock held) whenever the I/O side has something new to do: a frame was submitted,
  // or enabled changed. Set once, before use.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }

  // ---- render-thread side ---------------------------------------------------------------------------------------
  struct BeginInfo {
    uint64_t frame_id = 0;
    bool live = false;                // enabled and a session is up: the frame can be sent
    std::shared_ptr<SlotPool> pool;   // the session's shared-memory pool, if negotiated
  };
  // `live` is false also while the renderer is too slow for the deadline and a frame went out less than one of its
  // render times ago (docs/protocol.md section 5.9, engine rule 5): the engine then copies no pixels for it.
  BeginInfo begin(TimePoint now = Clock::now());
  // What begin(now) would say of `live`, without beginning a frame.
  bool would_be_live(TimePoint now) const;
  uint64_t latest_frame_id() const;
  // Queues `f` for sending; drops it when disabled or without a session, or drops the previously queued frame.
  void submit(SubmittedFrame f, TimePoint now);
  // The newest result still within its deadline, or null (counted as a fallback while enabled).
  std::shared_ptr<const ResultImage> acquire(TimePoint now);

  // ---- any thread -----------------------------------------------------------------------------------------------
  void fire_event(wire::Event e);
  void set_style(wire::StyleCommand s);
  // A post control (FRAME controls): queued and delivered with the style commands, in the order issued.
  void set_control(wire::Control c);
  void set_enabled(bool enabled);
  bool enabled() const;
  PipelineStats stats() const;

  // ---- I/O-thread side ------------------------------------------------------------------------------------------
  void session_started(uint64_t session, uint32_t max_in_flight, std::shared_ptr<SlotPool> pool,
                       wire::Compression compression = wire::Compression::none, bool doorbell = false);
  // The session is gone (connection lost, renderer restarted, disabled): frames in flight are lost and give their
  // events back; the queued frame is dropped.
  void session_ended();
  uint64_t session() const;
  // The next frame to send (with its events), or nothing: disabled, no session, nothing queued, or the in-flight
  // limit reached. The frame counts as in flight from here on.
  std::optional<OutgoingFrame> take_next(TimePoint now);
  // The frame returned by take_next was written to the socket (`bytes` on the wire).
  void sent(uint64_t frame_id, uint64_t bytes);
  // It could not be written: it counts as dropped and gives its events back.
  void send_failed(uint64_t frame_id);

  enum class Answer { fresh, late, unknown };
  // A RESULT for `frame_id`. `image` (null for "skipped") becomes the newest result when it is on time.
  // `timing` (the RESULT's, when known) feeds the adaptive in-flight limit.
  Answer on_result(uint64_t frame_id, std::shared_ptr<ResultImage> image, TimePoint now,
                   std::optional<ServerTiming> timing = std::nullopt);
  // An ERROR about `frame_id`. NO_SESSION: every frame in flight is lost (the caller re-handshakes). Any other
  // code answers the frame: its events count as delivered (the renderer saw them and rejected the frame).
  void on_frame_error(uint64_t frame_id, wire::ErrorCode code);

  size_t in_flight() const;
  uint32_t in_flight_limit() const;
  bool has_queued() const;
  // When the oldest frame in flight was sent (for the I/O thread's "renderer is silent" check).
  std::optional<TimePoint> oldest_in_flight_sent() const;
  // Whether `frame_id` is in flight (sent or being sent, not yet answered nor lost): PARTs of other frames are
  // discarded (protocol section 6.3.4 step 5).
  bool is_in_flight(uint64_t frame_id) const;
  // The in-flight frame's shared-memory slot index and pool, to check a RESULT's output reference.
  std::optional<uint64_t> result_slot_of(uint64_t frame_id) const;

  void add_bytes_sent(uint64_t n);
  void add_bytes_received(uint64_t n);
  void count_error();
  void count_reconnect();

  // ---- connection outcome: the I/O thread reports, any thread reads ------------------------------------------
  // The renderer refused the session (an ERROR answered HELLO). `error_text` becomes the last error. A retry asked
  // for before this moment is forgotten: it was not an answer to this refusal.
  void refused(int32_t code, std::string message, std::string error_text);
  // The I/O thread connects again; the refusal's code and message stay until a session starts.
  void leave_refused();
  // The engine asks to connect again (nrb_client_retry); a no-op unless refused. Enabling after a disable asks too.
  void request_retry();
  // Whether a retry was asked for since the refusal; clears the request.
  bool take_retry();
  // A connection problem the engine should be able to read (no WELCOME in time, ...): becomes the last error,
  // and is cleared when a session starts.
  void connection_error(std::string text);

  // ---- last error (nrb_last_error): set by the C ABI's failing calls and by connection problems ----------------
  void set_last_error(std::string text);
  std::string last_error() const;

 private:
  struct Pending {
    uint64_t seq;
    uint64_t carrier;  // frame id carrying it, 0 = waiting for a frame
  };
  struct PendingEvent : Pending {
    wire::Event event;
  };
  struct PendingStyle : Pending {
    wire::StyleCommand style;
    std::optional<wire::Control> control;  // set: this entry is a control, not `style`
  };
  struct InFlight {
    uint64_t id;
    TimePoint submit_time, sent_time;
    double deadline_ms;
    std::optional<uint64_t> result_slot;
    std::shared_ptr<FrameResources> resources;  // keeps staging/slot until answered
    bool alone = false;  // sent while no other frame was in flight: its link time has no queueing in it
  };

  void drop_queued_locked();
  void adapt_locked(const ServerTiming& t, double link_ms, bool alone);
  void give_back_locked(uint64_t frame_id);
  void acknowledge_locked(uint64_t frame_id);
  void trim_pending_locked();
  void wake();

  const Options opts_;
  std::function<void()> wake_;

  mutable std::mutex mutex_;
  bool enabled_;
  uint64_t next_frame_id_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t session_ = 0;
  uint32_t limit_;
  uint32_t ceiling_;              // the adaptive limit's maximum for this session
  double service_ms_ = 0.0;       // moving averages for the adaptive limit (see Options::frames_in_flight)
  double link_ms_ = 0.0;          // the fastest recent link time (queueing behind other frames only adds to it)
  double busy_ms_ = 0.0;          // moving average of ServerTiming::link_busy_ms
  double share_ = 0.0;            // moving average of ServerTiming::link_share
  uint32_t adaptive_seen_ = 0;
  // The renderer is too slow for the deadline (section 5.9, engine rule 5): each of its last (up to) 3 renders, the
  // session's first not counted, took longer than the frame's deadline. Then one frame per `slow_ms_` (the last
  // render's time) is live, the next at `next_live_`.
  std::array<double, 3> judged_ms_{};
  uint32_t judged_ = 0;  // renders judged so far (the session's first is not)
  bool too_slow_ = false;
  double slow_ms_ = 0.0;
  TimePoint next_live_{};
  std::shared_ptr<SlotPool> pool_;
  wire::Compression compression_ = wire::Compression::none;
  bool doorbell_ = false;  // statistics only: the I/O thread owns the doorbell
  std::optional<SubmittedFrame> queued_;
  std::deque<InFlight> in_flight_;  // ascending ids
  std::deque<PendingEvent> events_;
  std::deque<PendingStyle> styles_;
  std::shared_ptr<ResultImage> latest_;
  LatencyWindow rtt_;
  PipelineStats counters_;
  bool refused_ = false;
  bool retry_requested_ = false;
  int32_t refusal_code_ = 0;
  std::string refusal_message_;
  std::string last_error_;
  bool last_error_from_connection_ = false;
};

}  // namespace nrb::detail
