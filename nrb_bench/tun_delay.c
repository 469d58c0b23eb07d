/* tun_delay: a delay line for `nrb bench remote` (this kernel has no netem).
 *
 * Creates a TUN device, reads every packet the kernel routes into it and writes it back into the same device
 * `delay_us` microseconds later, so the kernel forwards it on (the bench routes by input interface, see
 * nrb_bench/remote.py). The device takes GSO super-packets (IFF_VNET_HDR + TSO offloads): at 10 Gbit/s that is
 * ~20k packets/s instead of ~800k, which one helper thread on a shared core can keep up with.
 *
 * usage: tun_delay TUN_NAME DELAY_US [QUEUE_LIMIT_BYTES]
 * Prints "ready" on stdout once the device exists; runs until SIGTERM/SIGINT or stdin closes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define QCAP 65536
#define MAXPKT (65536 + 64)

struct pkt { uint64_t due; size_t len; unsigned char *data; };
static struct pkt q[QCAP];
static size_t head, tail, queued_bytes;
static volatile sig_atomic_t stop;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s TUN_NAME DELAY_US [QUEUE_LIMIT_BYTES]\n", argv[0]); return 2; }
  uint64_t delay = strtoull(argv[2], NULL, 10);
  size_t limit = argc > 3 ? strtoull(argv[3], NULL, 10) : (size_t)64 << 20;
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  if (fd < 0) { perror("open /dev/net/tun"); return 1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); return 1; }
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) perror("TUNSETOFFLOAD (continuing)");
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  printf("ready\n");
  fflush(stdout);
  unsigned long long forwarded = 0, dropped = 0;
  unsigned char *buf = malloc(MAXPKT);
  while (!stop) {
    uint64_t t = now_us();
    int timeout = -1;
    if (head != tail) timeout = q[head].due > t ? (int)((q[head].due - t + 999) / 1000) : 0;
    if (timeout < 0 || timeout > 200) timeout = 200;  /* wake now and then to notice a closed stdin */
    struct pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
    /* poll has millisecond resolution: for sub-millisecond waits spin on the clock with a short sleep */
    int n = poll(p, 2, (head != tail && q[head].due <= t + 1000) ? 0 : timeout);
    if (n < 0 && errno != EINTR) { perror("poll"); break; }
    if (n > 0 && (p[1].revents & (POLLHUP | POLLIN))) {
      char c;
      if (read(0, &c, 1) <= 0) break;
    }
    for (;;) {  /* take everything the kernel has queued */
      ssize_t r = read(fd, buf, MAXPKT);
      if (r <= 0) break;
      size_t next = (tail + 1) % QCAP;
      if (next == head || queued_bytes + (size_t)r > limit) { dropped++; continue; }
      unsigned char *d = malloc((size_t)r);
      memcpy(d, buf, (size_t)r);
      q[tail] = (struct pkt){now_us() + delay, (size_t)r, d};
      queued_bytes += (size_t)r;
      tail = next;
    }
    t = now_us();
    while (head != tail && q[head].due <= t) {
      if (write(fd, q[head].data, q[head].len) < 0 && errno == EAGAIN) break;
      queued_bytes -= q[head].len;
      free(q[head].data);
      head = (head + 1) % QCAP;
      forwarded++;
    }
    if (head != tail && q[head].due > t && q[head].due - t < 1000) {
      struct timespec ts = {0, 50000};  /* 50 us */
      nanosleep(&ts, NULL);
    }
  }
  fprintf(stderr, "tun_delay: %llu packets forwarded, %llu dropped\n", forwarded, dropped);
  return 0;
}
