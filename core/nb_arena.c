/* nb_arena.c: the mmap bump arena for payloads larger than 46 bytes.
 *
 * Layout: a 64-byte header, NB_ARENA_REF_SLOTS uint32 reference counts, then
 * the data region. Everything another process can change lives in the
 * mapping; the capacity used for bounds checks is copied into the private
 * handle when the arena is opened, so a corrupted header can never make a
 * read or a write leave the mapping.
 *
 * Out of space: the bump offset is checked with a plain load first, so a
 * request that cannot fit fails without moving anything. Only when two
 * allocators race near the end can one fetch_add move the offset past the
 * capacity; that allocation then fails and the offset stays past the end
 * until reset, so the arena reads as full. Nothing is written and every
 * earlier allocation stays readable. The overshoot is bounded by the number
 * of racing threads times 4 GiB, far from wrapping 64 bits.
 *
 * Creating a file-backed arena: the creator builds and initialises the whole
 * file under a temporary name beside the path, then publishes it with
 * link(), which fails with EEXIST when another process won the race; the
 * loser discards its copy and opens the winner's. So no process ever sees a
 * half-written arena at path, and no one waits or polls. New files are
 * created with mode 0600 (owner only). The file system must support hard
 * links (tmpfs and every usual Linux file system do). */
#include "nb_arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nb_err.h"

#define NB__ARENA_HEADER_SIZE 64u
#define NB__ARENA_SLOTS_BYTES ((size_t)NB_ARENA_REF_SLOTS * sizeof(uint32_t))
#define NB__ARENA_PREFIX (NB__ARENA_HEADER_SIZE + NB__ARENA_SLOTS_BYTES)

/* The shared header; atomics in it must be address-free, which lock-free
 * atomics are, so two processes mapping it at different addresses agree. */
typedef struct arena_header_s {
  uint64_t magic;                /* NB_ARENA_MAGIC */
  uint32_t version;              /* NB_ARENA_VERSION */
  uint32_t header_size;          /* 64 */
  uint64_t capacity;             /* data bytes */
  _Atomic uint64_t alloc_offset; /* bump pointer, may pass capacity */
  _Atomic uint64_t epoch;        /* bumped by reset */
  _Atomic uint32_t ref_next;     /* next ref slot, may pass the slot count */
  uint32_t reserved[5];          /* zero */
} arena_header_t;

_Static_assert(sizeof(arena_header_t) == NB__ARENA_HEADER_SIZE,
               "arena header is 64 bytes");
_Static_assert(offsetof(arena_header_t, capacity) == 16, "layout");
_Static_assert(offsetof(arena_header_t, alloc_offset) == 24, "layout");
_Static_assert(offsetof(arena_header_t, epoch) == 32, "layout");
_Static_assert(offsetof(arena_header_t, ref_next) == 40, "layout");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "shared-memory atomics must be lock-free (address-free)");
_Static_assert(NB__ARENA_PREFIX % NB_ARENA_ALIGN == 0,
               "data region starts 8-byte aligned");

struct nb_arena_s {
  uint8_t *base;             /* the whole mapping */
  size_t map_size;           /* header + slots + capacity */
  size_t capacity;           /* trusted copy, checked at open */
  arena_header_t *hdr;   /* base */
  _Atomic uint32_t *slots;   /* base + 64 */
  uint8_t *data;             /* base + 64 + slot bytes */
};

/* Returns the mapping size for capacity data bytes, or 0 on overflow. */
static size_t arena_map_size(uint64_t capacity) {
  if (capacity > (uint64_t)SIZE_MAX - NB__ARENA_PREFIX) return 0;
  if (capacity > (uint64_t)INT64_MAX - NB__ARENA_PREFIX) return 0; /* off_t */
  return NB__ARENA_PREFIX + (size_t)capacity;
}

/* Wraps an existing mapping in a handle; returns 0 or NB_ENOMEM. */
static int arena_wrap(nb_arena_t **out, uint8_t *base, size_t map_size,
                      size_t capacity) {
  nb_arena_t *a = calloc(1, sizeof *a);
  if (!a) return NB_ENOMEM;
  a->base = base;
  a->map_size = map_size;
  a->capacity = capacity;
  a->hdr = (arena_header_t *)base;
  a->slots = (_Atomic uint32_t *)(base + NB__ARENA_HEADER_SIZE);
  a->data = base + NB__ARENA_PREFIX;
  *out = a;
  return 0;
}

/* Writes a fresh header into a zeroed mapping; returns nothing. The epoch
 * starts at 1 so an all-zero (forged or uninitialised) ref reads as stale. */
static void arena_init_header(uint8_t *base, size_t capacity) {
  arena_header_t *h = (arena_header_t *)base;
  h->version = NB_ARENA_VERSION;
  h->header_size = NB__ARENA_HEADER_SIZE;
  h->capacity = capacity;
  atomic_init(&h->alloc_offset, 0);
  atomic_init(&h->epoch, 1);
  atomic_init(&h->ref_next, 0);
  memset(h->reserved, 0, sizeof h->reserved);
  h->magic = NB_ARENA_MAGIC;
}

int nb_arena_new(nb_arena_t **out, size_t capacity) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (capacity == 0) return NB_EINVAL;
  size_t size = arena_map_size(capacity);
  if (!size) return NB_ENOMEM;
  /* Anonymous memory arrives zeroed, so the slots need no clearing. */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NB_ENOMEM;
  arena_init_header(p, capacity);
  int rc = arena_wrap(out, p, size, capacity);
  if (rc) munmap(p, size);
  return rc;
}

/* Validates the arena file open on fd and maps it; returns 0, NB_ETRUNC,
 * NB_EBADMAGIC, NB_EBADVER, NB_EINVAL (capacity disagrees), NB_ENOMEM or
 * NB_EIO. Does not close fd. */
static int arena_attach(nb_arena_t **out, int fd, size_t capacity) {
  struct stat st;
  if (fstat(fd, &st) != 0) return NB_EIO;
  if (st.st_size < (off_t)NB__ARENA_HEADER_SIZE) return NB_ETRUNC;
  uint8_t raw[NB__ARENA_HEADER_SIZE];
  ssize_t got = pread(fd, raw, sizeof raw, 0);
  if (got < 0) return NB_EIO;
  if ((size_t)got < sizeof raw) return NB_ETRUNC;
  /* Fields are copied out of bytes: the file is untrusted until checked. */
  uint64_t magic, cap;
  uint32_t version, header_size;
  memcpy(&magic, raw + offsetof(arena_header_t, magic), 8);
  memcpy(&version, raw + offsetof(arena_header_t, version), 4);
  memcpy(&header_size, raw + offsetof(arena_header_t, header_size), 4);
  memcpy(&cap, raw + offsetof(arena_header_t, capacity), 8);
  if (magic != NB_ARENA_MAGIC) return NB_EBADMAGIC;
  if (version != NB_ARENA_VERSION) return NB_EBADVER;
  /* Another header size means another layout, so it is a version problem. */
  if (header_size != NB__ARENA_HEADER_SIZE) return NB_EBADVER;
  size_t size = arena_map_size(cap);
  if (!size || (uint64_t)st.st_size != (uint64_t)size) return NB_ETRUNC;
  if (capacity != 0 && capacity != cap) return NB_EINVAL;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno == ENOMEM ? NB_ENOMEM : NB_EIO;
  int rc = arena_wrap(out, p, size, (size_t)cap);
  if (rc) munmap(p, size);
  return rc;
}

/* Creates the arena under a temporary name and links it to path; returns 0,
 * 1 when path appeared meanwhile (the caller opens it instead), or an
 * error with errno kept for NB_EIO. */
static int arena_create(nb_arena_t **out, const char *path,
                        size_t capacity) {
  size_t size = arena_map_size(capacity);
  if (!size) return NB_ENOMEM;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 8);
  if (!tmp) return NB_ENOMEM;
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".XXXXXX", 8);
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    free(tmp);
    return NB_EIO;
  }
  int rc = NB_EIO, saved = 0;
  void *p = MAP_FAILED;
  /* Reserving the blocks now turns a full disk into an error here instead
   * of a SIGBUS on some later write through the mapping. */
  int frc = posix_fallocate(fd, 0, (off_t)size);
  if (frc != 0) {
    errno = frc;
    goto fail;
  }
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) goto fail;
  /* Fresh file blocks read as zero, so the slots need no clearing. */
  arena_init_header(p, capacity);
  /* link() publishes the finished file atomically, or fails if it exists. */
  if (link(tmp, path) != 0) {
    if (errno == EEXIST) rc = 1;
    goto fail;
  }
  unlink(tmp);
  close(fd);
  free(tmp);
  rc = arena_wrap(out, p, size, capacity);
  if (rc) munmap(p, size);
  return rc;
fail:
  saved = errno;
  if (p != MAP_FAILED) munmap(p, size);
  close(fd);
  unlink(tmp);
  free(tmp);
  errno = saved;
  return rc;
}

int nb_arena_open(nb_arena_t **out, const char *path, size_t capacity) {
  if (!out) return NB_EINVAL;
  *out = NULL;
  if (!path || !*path) return NB_EINVAL;
  /* Three rounds cover losing the creation race and the winner's file
   * being removed again before we could open it. */
  for (int round = 0; round < 3; round++) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      int rc = arena_attach(out, fd, capacity);
      int saved = errno;
      close(fd);
      errno = saved;
      return rc;
    }
    if (errno != ENOENT) return NB_EIO;
    /* Capacity 0 means "open an existing arena": report the missing file. */
    if (capacity == 0) return NB_EIO;
    int rc = arena_create(out, path, capacity);
    if (rc != 1) return rc;
  }
  errno = ENOENT;
  return NB_EIO;
}

void nb_arena_free(nb_arena_t *a) {
  if (!a) return;
  munmap(a->base, a->map_size);
  free(a);
}

int nb_arena_alloc(nb_arena_t *a, const void *data, size_t len,
                   nb_arena_ref_t *ref) {
  if (!a || !ref || (len && !data)) return NB_EINVAL;
  if (len > UINT32_MAX) return NB_ETOOBIG;
  uint64_t need = ((uint64_t)len + NB_ARENA_ALIGN - 1) &
                  ~(uint64_t)(NB_ARENA_ALIGN - 1);
  uint64_t cap = a->capacity;
  arena_header_t *h = a->hdr;
  /* Acquire pairs with reset's release: an allocator that sees the new
   * epoch also sees the emptied offset and slot counter. */
  uint64_t epoch = atomic_load_explicit(&h->epoch, memory_order_acquire);
  /* Pre-checks with relaxed loads (they only predict, the fetch_adds below
   * decide): a request that cannot succeed moves nothing, so a stream of
   * failures never pushes the counters on. */
  if (atomic_load_explicit(&h->ref_next, memory_order_relaxed) >=
      NB_ARENA_REF_SLOTS)
    return NB_EREFSLOTS;
  uint64_t seen = atomic_load_explicit(&h->alloc_offset, memory_order_relaxed);
  if (seen > cap || need > cap - seen) return NB_ENOSPACE;
  /* Relaxed: the offset only hands out disjoint ranges; the data is
   * published to readers by whatever channel carries the ref. */
  uint64_t off = atomic_fetch_add_explicit(&h->alloc_offset, need,
                                           memory_order_relaxed);
  if (off > cap || need > cap - off) return NB_ENOSPACE; /* see top */
  /* Relaxed: like the offset, the counter only hands out distinct slots. */
  uint32_t slot = atomic_fetch_add_explicit(&h->ref_next, 1,
                                            memory_order_relaxed);
  /* Racing allocators took the last slots: this region stays unused until
   * reset, which is invisible to readers. */
  if (slot >= NB_ARENA_REF_SLOTS) return NB_EREFSLOTS;
  if (len) memcpy(a->data + off, data, len);
  /* Release: the count (and the bytes before it) are visible to anyone who
   * acquires the slot before the ref is shared. */
  atomic_store_explicit(&a->slots[slot], 1, memory_order_release);
  ref->offset = off;
  ref->len = (uint32_t)len;
  ref->ref_slot = slot;
  ref->epoch = (uint32_t)epoch;
  ref->reserved = 0;
  return 0;
}

/* Checks a ref's epoch and data bounds; returns 0, NB_ESTALE or
 * NB_EBOUNDS. */
static int arena_check(const nb_arena_t *a, const nb_arena_ref_t *ref) {
  /* Acquire pairs with reset's release, so a reader that sees the new epoch
   * bounds-checks against the emptied offset, not the old one. */
  uint64_t epoch = atomic_load_explicit(&a->hdr->epoch, memory_order_acquire);
  if (ref->epoch != (uint32_t)epoch) return NB_ESTALE;
  /* Relaxed: whoever handed us the ref did so after its fetch_add, so the
   * offset we load already covers it; a forged ref only has to stay inside
   * what was allocated, which this bound guarantees. */
  uint64_t end = atomic_load_explicit(&a->hdr->alloc_offset,
                                      memory_order_relaxed);
  if (end > a->capacity) end = a->capacity;
  if (ref->offset % NB_ARENA_ALIGN != 0 || ref->offset > end ||
      ref->len > end - ref->offset)
    return NB_EBOUNDS;
  return 0;
}

int nb_arena_read(const nb_arena_t *a, const nb_arena_ref_t *ref,
                  const void **data) {
  if (!a || !ref || !data) return NB_EINVAL;
  int rc = arena_check(a, ref);
  if (rc) return rc;
  *data = a->data + ref->offset;
  return 0;
}

/* Finds the live count of a ref; returns it, or NULL with *err set to
 * NB_ESTALE or NB_EBOUNDS. */
static _Atomic uint32_t *arena_slot(const nb_arena_t *a,
                                    const nb_arena_ref_t *ref, int *err) {
  *err = arena_check(a, ref);
  if (*err) return NULL;
  /* Relaxed: the ref came from an alloc that already bumped the counter,
   * and this is a bounds check, not a publication. */
  uint32_t next = atomic_load_explicit(&a->hdr->ref_next, memory_order_relaxed);
  if (ref->ref_slot >= NB_ARENA_REF_SLOTS || ref->ref_slot >= next) {
    *err = NB_EBOUNDS;
    return NULL;
  }
  return &a->slots[ref->ref_slot];
}

int nb_arena_retain(nb_arena_t *a, const nb_arena_ref_t *ref) {
  if (!a || !ref) return NB_EINVAL;
  int err;
  _Atomic uint32_t *c = arena_slot(a, ref, &err);
  if (!c) return err;
  uint32_t cur = atomic_load_explicit(c, memory_order_relaxed);
  do {
    /* Reviving a released payload would hide a use-after-release bug. */
    if (cur == 0) return NB_EINVAL;
    if (cur >= (uint32_t)INT32_MAX) return NB_ELIMIT;
    /* Relaxed: a new reference is made from one the caller already holds,
     * so there is nothing to order (as with shared pointers). */
  } while (!atomic_compare_exchange_weak_explicit(
      c, &cur, cur + 1, memory_order_relaxed, memory_order_relaxed));
  return (int)(cur + 1);
}

int nb_arena_release(nb_arena_t *a, const nb_arena_ref_t *ref) {
  if (!a || !ref) return NB_EINVAL;
  int err;
  _Atomic uint32_t *c = arena_slot(a, ref, &err);
  if (!c) return err;
  uint32_t cur = atomic_load_explicit(c, memory_order_relaxed);
  do {
    if (cur == 0) return NB_EINVAL;
    /* Release: this holder's reads of the payload complete before the
     * count drops, so whoever sees 0 may reuse the bytes. */
  } while (!atomic_compare_exchange_weak_explicit(
      c, &cur, cur - 1, memory_order_release, memory_order_relaxed));
  return (int)(cur - 1);
}

uint64_t nb_arena_reset(nb_arena_t *a) {
  arena_header_t *h = a->hdr;
  /* Relaxed stores here: reset runs alone (see the header), and the
   * release on the epoch below publishes them all. */
  uint32_t used = atomic_exchange_explicit(&h->ref_next, 0,
                                           memory_order_relaxed);
  if (used > NB_ARENA_REF_SLOTS) used = NB_ARENA_REF_SLOTS;
  /* Only slots handed out this epoch can be nonzero, so clearing them costs
   * the allocations made, never the capacity. */
  for (uint32_t i = 0; i < used; i++)
    atomic_store_explicit(&a->slots[i], 0, memory_order_relaxed);
  atomic_store_explicit(&h->alloc_offset, 0, memory_order_relaxed);
  /* Release: the emptied state above is visible to anyone who acquires the
   * new epoch (alloc and read do). */
  return atomic_fetch_add_explicit(&h->epoch, 1, memory_order_release) + 1;
}

uint64_t nb_arena_epoch(const nb_arena_t *a) {
  /* Acquire, as in read: a caller that sees a new epoch sees it emptied. */
  return atomic_load_explicit(&a->hdr->epoch, memory_order_acquire);
}

size_t nb_arena_used(const nb_arena_t *a) {
  /* Relaxed: a statistic; no bytes are read on its strength. */
  uint64_t off = atomic_load_explicit(&a->hdr->alloc_offset,
                                      memory_order_relaxed);
  /* After a raced failure the offset sits past the end: that reads as full. */
  return off > a->capacity ? a->capacity : (size_t)off;
}

size_t nb_arena_capacity(const nb_arena_t *a) { return a->capacity; }

int nb_arena_put_payload(nb_arena_t *a, nb_spike_t *s, const void *data,
                         size_t len) {
  if (!s || (len && !data)) return NB_EINVAL;
  if (len <= NB_PAYLOAD_MAX) return nb_spike_set_payload(s, data, len);
  if (!a) return NB_ENOSPACE;
  nb_arena_ref_t ref;
  int rc = nb_arena_alloc(a, data, len, &ref);
  if (rc) return rc;
  return nb_spike_set_ref(s, &ref);
}

int nb_arena_get_payload(const nb_arena_t *a, const nb_spike_t *s,
                         const void **data, size_t *len) {
  if (!s || !data || !len) return NB_EINVAL;
  if (!nb_spike_is_ref(s)) {
    *data = s->payload;
    *len = nb_spike_inline_len(s);
    return 0;
  }
  nb_arena_ref_t ref;
  /* A ref-length spike without the marker byte is malformed input. */
  if (!a || nb_spike_get_ref(s, &ref) != 0) return NB_EINVAL;
  int rc = nb_arena_read(a, &ref, data);
  if (rc) return rc;
  *len = ref.len;
  return 0;
}
