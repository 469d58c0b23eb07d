// The engine's doorbell FIFOs (cpp/src/doorbell.hpp, protocol section 7.1), driven from the renderer's end with
// plain read/write on the same pipes.
#include <doctest/doctest.h>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "doorbell.hpp"

using nrb::detail::Doorbell;

namespace {

std::vector<uint8_t> read_all(int fd) {
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r <= 0) break;
    out.insert(out.end(), buf, buf + r);
  }
  return out;
}

std::vector<uint8_t> record(const std::string& body) {
  const uint32_t n = static_cast<uint32_t>(body.size());
  std::vector<uint8_t> r(4 + body.size());
  for (int i = 0; i < 4; ++i) r[size_t(i)] = uint8_t(n >> (8 * i));
  std::memcpy(r.data() + 4, body.data(), body.size());
  return r;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/nrb-doorbell-test-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { ::rmdir(path.c_str()); }
};

}  // namespace

TEST_CASE("the doorbell makes two private FIFOs named as the protocol requires, and unlink removes them") {
  TempDir dir;
  auto bell = Doorbell::create(dir.path);
  const auto spec = bell->spec();
  for (const std::string& p : {spec.to_renderer, spec.to_engine}) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(p.rfind(dir.path + "/nrb-", 0) == 0);
  }
  CHECK(spec.to_renderer != spec.to_engine);
  bell->unlink();
  CHECK_FALSE(exists(spec.to_renderer));
  CHECK_FALSE(exists(spec.to_engine));
  bell.reset();  // destroying an unlinked doorbell only closes its descriptors
}

TEST_CASE("records sent reach the renderer's end length-prefixed, and its records come back whole") {
  TempDir dir;
  auto bell = Doorbell::create(dir.path);
  const std::string header = "\x82\xa3nrb\x01\xa4type\xa5" "FRAME";
  bell->send(reinterpret_cast<const uint8_t*>(header.data()), header.size());
  CHECK_FALSE(bell->pending());
  CHECK(read_all(bell->to_renderer_fd()) == record(header));

  // The renderer writes two answers, the second in two pieces.
  auto a = record("first"), b = record(std::string(3000, 'x'));
  REQUIRE(::write(bell->to_engine_fd(), a.data(), a.size()) == ssize_t(a.size()));
  REQUIRE(::write(bell->to_engine_fd(), b.data(), 100) == 100);
  std::vector<std::vector<uint8_t>> got;
  REQUIRE(bell->receive(got));
  REQUIRE(got.size() == 1);
  CHECK(std::string(got[0].begin(), got[0].end()) == "first");
  REQUIRE(::write(bell->to_engine_fd(), b.data() + 100, b.size() - 100) == ssize_t(b.size() - 100));
  REQUIRE(bell->receive(got));
  REQUIRE(got.size() == 2);
  CHECK(got[1].size() == 3000);
}

TEST_CASE("a record length outside 1..65536 from the renderer is a corrupt stream") {
  TempDir dir;
  auto bell = Doorbell::create(dir.path);
  const uint8_t zero[5] = {0, 0, 0, 0, 0x80};
  REQUIRE(::write(bell->to_engine_fd(), zero, sizeof zero) == 5);
  std::vector<std::vector<uint8_t>> got;
  CHECK_FALSE(bell->receive(got));
  CHECK(got.empty());
}

TEST_CASE("a full pipe keeps the rest of a record pending until the renderer reads, without blocking") {
  TempDir dir;
  auto bell = Doorbell::create(dir.path);
  const std::string big(60000, 'h');
  size_t sent = 0;
  while (!bell->pending() && sent < 64) {  // the pipe holds 64 KiB by default: the second record does not fit
    bell->send(reinterpret_cast<const uint8_t*>(big.data()), big.size());
    ++sent;
  }
  REQUIRE(bell->pending());
  std::vector<uint8_t> drained = read_all(bell->to_renderer_fd());
  while (!bell->flush()) {
    auto more = read_all(bell->to_renderer_fd());
    drained.insert(drained.end(), more.begin(), more.end());
  }
  auto rest = read_all(bell->to_renderer_fd());
  drained.insert(drained.end(), rest.begin(), rest.end());
  CHECK(drained.size() == sent * (4 + big.size()));
  CHECK_THROWS_AS(bell->send(reinterpret_cast<const uint8_t*>(big.data()), 65537), std::length_error);
  CHECK_THROWS_AS(bell->send(reinterpret_cast<const uint8_t*>(big.data()), 0), std::length_error);
}

#endif
