// The client's network side: one thread that owns the ZeroMQ DEALER connection and runs the session.
//
//   idle (disabled) --enable--> connecting --HELLO accepted by the socket--> handshaking --WELCOME--> connected
//   connected --disable--> draining (answers to frames in flight) --> BYE, close --> idle
//   With shared memory the session may also use the doorbell FIFOs (protocol section 7.1): FRAME headers go out and
//   RESULTs come back through them, bypassing ZeroMQ's own I/O threads; everything else stays on the socket.
//   any failure (socket monitor: disconnected; no WELCOME in time; renderer silent; NO_SESSION; BYE) --> the frames
//   in flight are lost (their events go back to the queue), the socket and shared-memory pool are dropped, and a
//   new connection is made after an exponential backoff. The render thread is never involved: it only sees
//   Pipeline::begin().live turn false and acquire() fall back.
//   handshaking --ERROR answering HELLO--> refused: the connection is closed and nothing is sent (asking again
//   would get the same answer) until the engine asks: Pipeline::request_retry (nrb_client_retry) or a disable
//   followed by an enable (the player's toggle) --> connecting. Disabled meanwhile --> idle.
//   No WELCOME in time is not a refusal: ZeroMQ connects lazily (HELLO is queued before any peer exists), so
//   "nothing listens there" and "something listens but does not answer" look the same; that stays a failure with
//   backoff, and its text becomes the client's last error.
//
// The render thread reaches this thread only through the Pipeline (whose wake callback pokes an inproc socket);
// nothing here blocks on the render thread and nothing on the render thread blocks on the network.
#pragma once

#include <zmq.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <deque>
#include <string>
#include <thread>
#include <unordered_map>

#include "client_options.hpp"
#include "connection.hpp"
#include "doorbell.hpp"
#include "pipeline.hpp"
#include "shm_pool.hpp"
#include "thread_pool.hpp"

namespace nrb::detail {

// Whether compressing a frame makes the session faster. `compress_ms`: the chain's CPU for it (see below),
// `raw_link_ms`: the link time of its raw bytes, `ratio`: compressed / raw. One frame at a time (`overlapped`
// false) every stage's ms add up: a compressed frame costs the CPU plus the link for the smaller bytes. With frames
// in flight overlapping (the link is the bottleneck, section 5.9) a frame costs its slowest stage: compressed, the
// link for the smaller bytes or the chain's CPU shared by `cores`. Raw, it costs the link for all of them. The
// CPU counts kCodecCpuWeight times what the codec threads measured: the game and the rest of the chain want the
// same cores, and what the contention costs them shows in no codec's clock (counted once, at 10 Gbit/s on the
// remote bench the two sides read 13-17 and 11-18 ms, 42% of frames went compressed, and the session made 10%
// fewer fps than raw). A slow link's saving is link time, counted as it is.
inline constexpr double kCodecCpuWeight = 2.0;
inline bool compression_pays(double compress_ms, double raw_link_ms, double ratio, bool overlapped,
                           double cores) noexcept {
  const double packed_link_ms = raw_link_ms * ratio;
  const double cpu_ms = kCodecCpuWeight * compress_ms;
  const double packed_ms = overlapped ? std::max(packed_link_ms, cpu_ms / cores) : cpu_ms + packed_link_ms;
  return packed_ms < raw_link_ms;
}

// One PART's chunk of a streamed image (protocol section 6.3.4), shared by the I/O thread and the nrb-pool tasks
// that decompress it.
struct StreamChunk {
  std::shared_ptr<void> message;  // the PART's ZeroMQ frames: `in` points into them
  const uint8_t* in = nullptr;
  size_t n = 0;
  // Decompressed ahead at the size its codec frame announces (`codec`, `raw_size`, set by the I/O thread before it
  // posts the task; `codec` none: not decompressed ahead). `state` 0: not started; whoever moves it first owns
  // it: the task posted on arrival (0 -> 1, decompresses, sets `raw`, `error`, `cpu_ms`, then 2 under `m`), or
  // the RESULT's task (0 -> 2: it decompresses the chunk itself at the table's size), which otherwise waits for 2.
  wire::Compression codec = wire::Compression::none;
  uint64_t raw_size = 0;
  std::unique_ptr<uint8_t[]> raw;
  std::string error;
  double cpu_ms = 0;
  std::atomic<int> state{0};
  std::mutex m;
  std::condition_variable cv;
  // Nobody will want it: a decompression not yet started never starts (one started finishes on its own).
  void cancel() noexcept {
    int idle = 0;
    state.compare_exchange_strong(idle, 2);
  }
};

class IoThread {
 public:
  // Starts the thread. `pipeline` and `log` must outlive this object. Throws zmq::error_t / std::system_error.
  IoThread(const ClientOptions& opts, Pipeline& pipeline, Logger log);
  // Says BYE when a session is up, closes everything and joins the thread.
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  // Wakes the thread (new frame, enable/disable). Any thread; cheap when a wake is already pending.
  void wake() noexcept;

 private:
  enum class State { idle, backoff, connecting, handshaking, connected, draining, refused };

  void run() noexcept;
  void step(TimePoint now);
  TimePoint next_deadline(TimePoint now) const;
  void open_connection(TimePoint now);
  void fail(const std::string& why, TimePoint now, bool quick_retry = false);
  void close_session(bool say_bye);
  void try_send_hello(TimePoint now);
  void send_frames(TimePoint now);
  bool send_message(const wire::Message& m);
  void keepalive(TimePoint now);
  void handle_message(std::vector<zmq::message_t>& parts, TimePoint now, bool from_doorbell = false);
  void ring_doorbell(TimePoint now);
  void handle_welcome(const wire::Welcome& w, TimePoint now);
  void follow_redirect(const wire::Redirect& r, TimePoint now);
  // Where HELLO goes now: the configured endpoint, or the worker a front door placed the session on.
  const std::string& target() const noexcept { return worker_.empty() ? opts_.endpoint : worker_; }
  void handle_result(wire::Result& r, std::shared_ptr<void> frames, TimePoint now);
  void handle_part(const wire::Part& p, std::shared_ptr<void> frames);
  void handle_error(const wire::Error& e, TimePoint now);
  void refuse(const wire::Error& e);

  const ClientOptions& opts_;
  Pipeline& pipeline_;
  Logger log_;

  zmq::context_t ctx_;
  zmq::socket_t wake_rx_, wake_tx_;
  std::mutex wake_mutex_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stop_{false};

  // I/O-thread state.
  State state_ = State::idle;
  std::unique_ptr<Connection> conn_;
  uint64_t conn_counter_ = 0;
  TimePoint state_deadline_{};  // connect/handshake timeout, drain end, or retry time in backoff
  uint32_t backoff_ms_;
  bool had_session_ = false;
  uint64_t handshake_timeouts_ = 0;  // in a row, since the last session: told in the last error
  uint64_t session_ = 0;
  // Placement (protocol section 5.10): the worker a front door redirected us to (empty: talking to opts_.endpoint)
  // and the last ticket, brought back to the front door after a failure so it restores the session's style state.
  std::string worker_, ticket_;
  std::shared_ptr<SlotPool> pool_;      // offered in the pending HELLO / accepted for the session
  std::optional<wire::ShmPool> pool_spec_;
  std::unique_ptr<Doorbell> bell_;  // offered in the pending HELLO / accepted for the session (section 7.1)
  bool bell_active_ = false;
  wire::Compression compression_ = wire::Compression::none;
  bool allow_lz4_ = false, allow_zstd_ = false, allow_jpeg_ = false, allow_webp_ = false;
  bool allow_chunked_ = false;  // both sides listed "chunked" (section 6.3.2)
  bool allow_shuffle_ = false;  // both sides listed "shuffle" (section 6.3.3)
  bool allow_streamed_ = false;  // both sides listed "streamed_output" (section 6.3.4)
  bool allow_streamed_frames_ = false;  // both sides listed "streamed_frames" (section 6.3.5)
  wire::WelcomeOutput output_{};  // what WELCOME promised: a RESULT of another size or format is not shown
  // Buffer names the renderer asked for in WELCOME (required + optional, and the buffers each can be derived
  // from, section 5.2): a buffer outside it is never sent (its bytes would cross the link for nothing).
  std::vector<std::string> wanted_;
  TimePoint last_recv_{}, last_send_{};
  std::optional<TimePoint> ping_sent_;
  uint64_t ping_nonce_ = 0;

  // The CPU work of the link, off this thread (section 6.3.2): compressing frames (in chunks when negotiated) and
  // decompressing or decoding returned images. Made with the first frame or image that needs it; `nrb-pool`
  // threads, the machine's cores clamped to 2..4.
  std::unique_ptr<ThreadPool> work_pool_;
  ThreadPool& work_pool();
  // One chunk of a streamed FRAME buffer (section 6.3.5): compressed by a pool task of its own, which touches
  // nothing but this piece (and the raw bytes it reads), then sets `ready` and wakes this thread, which sends it in
  // its PART. Shared with ZeroMQ too: the PART's payload frame views `out` (no copy).
  struct StreamPiece {
    size_t buffer = 0;           // the descriptor's position in the FRAME's buffers
    uint64_t index = 0;          // its entry in that buffer's chunk table
    const uint8_t* raw = nullptr;  // its raw bytes (the frame's resources, kept alive by the task)
    uint64_t len = 0;
    unsigned texel = 0;          // > 1: compressed from byte planes of this size (section 6.3.3)
    std::vector<uint8_t> out;    // set by the pool task, read by this thread once `ready`
    std::string error;
    double cpu_ms = 0;
    std::atomic<bool> ready{false};
    bool sent = false;           // this thread only
  };
  // Frames taken from the pipeline, oldest first, each being compressed on the pool or ready to go: sent from the
  // front as they become ready, so frames leave in the order they were taken and this thread never waits for one.
  // A streamed frame (section 6.3.5) at the front sends each piece's PART as soon as it is compressed, and its
  // FRAME once all are out; the frames behind it keep compressing meanwhile, and send their PARTs after that FRAME.
  struct Outgoing {
    uint64_t id = 0;
    wire::Frame msg;
    std::shared_ptr<void> keep;  // what the payload views point into (the frame's resources, compressed bytes)
    uint64_t raw_bytes = 0;
    bool compressed = false;     // compression was chosen for it (some buffers may still go raw: no gain)
    double compress_cpu_ms = 0;  // CPU of all its chunks, on whichever threads ran them
    std::string error;           // a compressor failure: the frame is dropped
    std::atomic<bool> ready{false};  // not streamed: compressed (or raw), the whole message can go
    // Streamed: its pieces, fixed before any is posted; what of them went out (PART headers and payloads).
    bool streamed = false;
    std::vector<std::shared_ptr<StreamPiece>> pieces;
    size_t pieces_sent = 0;
    uint64_t part_bytes = 0, part_payload_bytes = 0;
  };
  std::deque<std::shared_ptr<Outgoing>> outgoing_;
  void flush_outgoing(TimePoint now);
  // Sends the PARTs of `o`'s pieces compressed since the last call. `done`: every piece is out; false with
  // o.error empty: some are still compressing (or the socket refused a PART: `refused`).
  struct PartsSent {
    bool done = false;
    bool refused = false;
  };
  PartsSent send_parts(Outgoing& o, TimePoint now);
  // Splits `o`'s inline buffers into stream chunks and posts one compression task per piece (section 6.3.5).
  void stream_frame(const std::shared_ptr<Outgoing>& o, std::shared_ptr<void> resources, wire::Compression codec,
                    int level, bool shuffle);
  // The pool's CPU ms for the newest decompressed (lossless) image: part of the chain's cost of compressing.
  std::atomic<double> image_decode_ms_{0};
  // Warnings from pool threads, logged by this thread (the engine's log callback is only ever called from here).
  std::mutex pool_log_mutex_;
  std::vector<std::string> pool_log_;
  void flush_pool_log();
  void decode_image_on_pool(wire::BufferDesc out, std::shared_ptr<void> frames, uint64_t frame,
                            ServerTiming timing, double server_ms);
  // A RESULT image the pool could not produce: not shown, counted, logged by this thread later. Any thread.
  void image_failed(uint64_t frame, const wire::DecodeError& err);

  // Streamed images (section 6.3.4): the PARTs held for each frame in flight until its RESULT. Each chunk is
  // decompressed on the pool as soon as it arrives, into a buffer of its own (its RESULT, which says what the
  // chunk must hold, comes later); the RESULT's pool task then checks each and puts the image together.
  struct StreamedFrame {
    std::vector<std::shared_ptr<StreamChunk>> chunks;  // by index; null: no PART for it
    size_t parts = 0;
    uint64_t bytes = 0;        // PART payloads held (the holding limit of step 5)
    uint64_t ahead_bytes = 0;  // raw bytes being decompressed ahead: at most the output image's size
    std::string broken;        // over a holding limit or a repeated index: the RESULT is PAYLOAD_MISMATCH
  };
  std::unordered_map<uint64_t, StreamedFrame> streamed_;  // by frame id; this session's frames in flight only
  // Forgets a frame's PARTs; chunks nobody started decompressing are never decompressed.
  static void drop_chunks(StreamedFrame& s);
  void discard_streamed(uint64_t frame);
  void discard_all_streamed();
  // The RESULT of a streamed output: checks the PARTs held against its chunk table (on this thread, cheap), then
  // decompresses what is left and assembles the image on the pool.
  void assemble_streamed(wire::BufferDesc out, StreamedFrame parts, std::shared_ptr<void> frames, uint64_t frame,
                         ServerTiming timing, double server_ms);
  // Whether compressing pays, decided per frame (docs/protocol.md section 6.3): compress when the measured time to
  // compress a frame is less than the link time the bytes it saves would take at the measured link throughput.
  // Moving averages; 0 = not measured yet (compress, which measures both).
  struct CompressionEstimate {
    double link_bytes_per_ms = 0;      // (frame bytes up + image bytes down) / (round trip - server's own time)
    // raw bytes / CPU ms the whole chain spends on compression: libnrb compressing the frame, the renderer
    // decompressing it and compressing the image (its RESULT decode_ms and encode_ms), libnrb decompressing that
    double compress_bytes_per_ms = 0;
    double ratio = 1;                  // compressed / raw
    uint64_t raw_frames = 0;           // sent raw in a row: every 16th is compressed anyway, to measure again
    uint64_t compressed_frames = 0;    // compressed on a streamed_frames session: every 16th goes whole (a link sample)
  } est_;
  struct SentFrame {
    uint64_t id;
    TimePoint sent;
    uint64_t bytes;      // on the wire
    uint64_t raw_bytes;  // before compression
    double compress_cpu_ms;  // > 0: this frame was compressed, at this CPU cost here
    bool streamed;           // its buffers went in PARTs (section 6.3.5): not a sample of the link
  };
  std::vector<SentFrame> sent_;  // frames in flight: when they left and how many bytes they took
  double last_decode_ms_ = 0;    // decoding the header of the message being handled (payloads: on the pool)
  bool compress_this_frame(uint64_t raw_bytes);
  // Learns the link's throughput (and, for a compressed frame, the chain's compression cost) from an answer;
  // returns the answered frame's bytes on the wire (0: not a frame sent on this connection).
  uint64_t learn(const wire::Result& r, uint64_t result_bytes, TimePoint now);
  std::thread thread_;  // last: started after everything above is initialised
};

}  // namespace nrb::detail
