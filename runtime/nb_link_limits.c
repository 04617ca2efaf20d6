/* nb_link_limits.c: the bookkeeping behind a node's limits on what peers
 * may hold (nb_link_limits_t in nb_link.h): defaults, the log limiter that
 * keeps a flood of refusals to one line per address and kind, and the
 * reserve descriptor that lets the node refuse a caller when descriptors
 * ran out. The decisions themselves (which connection to close) are made
 * in runtime/nb_link.c, which owns the connections. */
#include "nb_link_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "nb_rt_defaults.h"

nb_link_limits_t nb_link_limits_default(void) {
  nb_link_limits_t o;
  memset(&o, 0, sizeof o);
  return nb__limits_fill(&o);
}

nb_link_limits_t nb__limits_fill(const nb_link_limits_t *in) {
  nb_link_limits_t o;
  if (in) o = *in;
  else memset(&o, 0, sizeof o);
  if (!o.max_pending) o.max_pending = NB_LINK_MAX_PENDING;
  if (!o.pending_per_addr) o.pending_per_addr = NB_LINK_PENDING_PER_ADDR;
  if (!o.max_links) o.max_links = NB_LINK_MAX_LINKS;
  if (!o.links_per_addr) o.links_per_addr = NB_LINK_LINKS_PER_ADDR;
  if (!o.frame_timeout_ms) o.frame_timeout_ms = NB_LINK_FRAME_TIMEOUT_MS;
  if (!o.keepalive_ms) o.keepalive_ms = NB_LINK_KEEPALIVE_MS;
  if (!o.idle_timeout_ms) o.idle_timeout_ms = NB_LINK_IDLE_TIMEOUT_MS;
  if (!o.rx_bytes) o.rx_bytes = NB_LINK_RX_BYTES;
  /* Why: a keepalive at or past the idle timeout would let a quiet but
   * healthy link be closed by its peer. */
  if (o.keepalive_ms >= o.idle_timeout_ms)
    o.keepalive_ms = o.idle_timeout_ms / 3 ? o.idle_timeout_ms / 3 : 1;
  return o;
}

void nb__lim_init(nb__node_lim_t *l, const nb_link_limits_t *o) {
  memset(l, 0, sizeof *l);
  l->o = nb__limits_fill(o);
  l->spare_fd = -1;
  nb__lim_spare_take(l);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < (1u << 30))
    l->fd_limit = (int)rl.rlim_cur;
}

void nb__lim_free(nb__node_lim_t *l) {
  if (l->spare_fd >= 0) close(l->spare_fd);
  l->spare_fd = -1;
}

/* Returns the smaller of a and b. */
static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

uint32_t nb__lim_sweep_ms(const nb__node_lim_t *l, uint32_t hello_ms) {
  uint32_t m = min_u32(hello_ms, l->o.frame_timeout_ms);
  m = min_u32(m, min_u32(l->o.keepalive_ms, l->o.idle_timeout_ms));
  m /= 4;
  return m < 5 ? 5 : m;
}

int nb__lim_log_ok(nb__node_lim_t *l, const char *ip, uint32_t kind,
                   uint64_t now_ms, uint64_t *held) {
  nb__lim_slot_t *s = NULL, *oldest = &l->log[0];
  for (size_t i = 0; i < NB__LIM_LOG_SLOTS && !s; i++) {
    nb__lim_slot_t *e = &l->log[i];
    if (e->kind == kind && strcmp(e->ip, ip) == 0) s = e;
    else if (e->last_ms < oldest->last_ms) oldest = e;
  }
  *held = 0;
  if (s && now_ms - s->last_ms < NB__LIM_LOG_EVERY_MS) {
    s->held++;
    return 0;
  }
  if (!s) {
    /* A table full of other addresses forgets the one heard from least
     * recently: at worst that address is logged again early. */
    s = oldest;
    memset(s, 0, sizeof *s);
    s->kind = kind;
    snprintf(s->ip, sizeof s->ip, "%s", ip);
  }
  *held = s->held;
  s->held = 0;
  s->last_ms = now_ms ? now_ms : 1;
  return 1;
}

uint32_t nb__lim_msg_kind(const char *why) {
  uint32_t h = 2166136261u;
  for (; *why; why++)
    if (*why < '0' || *why > '9') h = (h ^ (uint8_t)*why) * 16777619u;
  return NB__LIM_MSG | (h & 0xffffu);
}

int nb__lim_fd_tight(const nb__node_lim_t *l, int fd) {
  if (l->fd_limit <= 0 || fd < 0) return 0;
  int room = l->fd_limit / 8 > 16 ? l->fd_limit / 8 : 16;
  /* Descriptors are handed out lowest first: fd N means 0..N-1 are all
   * taken, so N near the limit means few are left. */
  return fd >= l->fd_limit - room;
}

int nb__lim_fds_out(nb__node_lim_t *l) {
  if (l->spare_fd < 0) return 0;
  int fd = fcntl(l->spare_fd, F_DUPFD_CLOEXEC, 0);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return errno == EMFILE || errno == ENFILE;
}

int nb__lim_spare_release(nb__node_lim_t *l) {
  if (l->spare_fd < 0) return 0;
  close(l->spare_fd);
  l->spare_fd = -1;
  return 1;
}

void nb__lim_spare_take(nb__node_lim_t *l) {
  if (l->spare_fd < 0) l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}
