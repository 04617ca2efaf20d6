/* nb_arena.h: the mmap region that holds payloads larger than 46 bytes.
 *
 * Layout (file-backed arenas share it across processes):
 *   header (64 bytes): magic "NBARENA1", version, header size, capacity,
 *                      bump offset, epoch, next ref slot
 *   ref-count slots:   NB_ARENA_REF_SLOTS x uint32
 *   data region:       capacity bytes, bump-allocated in 8-byte units
 *
 * Concurrency contract: alloc, read, retain and release are lock-free and
 * safe from any thread or process; reset must not race with allocators or
 * with readers of the old epoch (reads after it fail with NB_ESTALE, never
 * read garbage). */
#ifndef NB_ARENA_H
#define NB_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "nb_spike.h"

#define NB_ARENA_MAGIC 0x314e4552414e424eull /* "NBARENA1" little-endian */
#define NB_ARENA_VERSION 1u
#define NB_ARENA_REF_SLOTS 65536u
#define NB_ARENA_ALIGN 8u

typedef struct nb_arena_s nb_arena_t;

/* Creates an anonymous (process-private) arena with capacity data bytes;
 * returns 0, NB_EINVAL for capacity 0, or NB_ENOMEM. */
int nb_arena_new(nb_arena_t **out, size_t capacity);

/* Opens the arena file at path, creating it with capacity data bytes when
 * it does not exist. An existing file is checked: NB_EBADMAGIC for a
 * foreign file, NB_EBADVER for another version, NB_ETRUNC when its size
 * does not match its header (capacity 0 = take the file's; another nonzero
 * capacity is NB_EINVAL). Returns 0 or one of those, or NB_EIO with errno
 * kept (ENOENT when the file is missing and capacity is 0). */
int nb_arena_open(nb_arena_t **out, const char *path, size_t capacity);

/* Unmaps the arena (the file, if any, stays). */
void nb_arena_free(nb_arena_t *a);

/* Copies len bytes into the arena with one fetch_add on the bump offset
 * and one on the slot counter, sets the ref count to 1, fills *ref;
 * returns 0, NB_ENOSPACE (nothing is written, the arena is unchanged for
 * readers), NB_EREFSLOTS, or NB_ETOOBIG for len >= 4 GiB. */
int nb_arena_alloc(nb_arena_t *a, const void *data, size_t len,
                   nb_arena_ref_t *ref);

/* Points *data at the bytes of ref after checking its epoch (NB_ESTALE) and
 * bounds (NB_EBOUNDS); returns 0 or one of those. The bytes are valid until
 * the next reset. */
int nb_arena_read(const nb_arena_t *a, const nb_arena_ref_t *ref,
                  const void **data);

/* Adds one reference; returns the new count, or a negative error (as for
 * release, and NB_EINVAL when the count is already 0). */
int nb_arena_retain(nb_arena_t *a, const nb_arena_ref_t *ref);

/* Drops one reference; returns the new count (0 = unused), or a negative
 * error (NB_ESTALE, NB_EBOUNDS, NB_EINVAL when already 0). */
int nb_arena_release(nb_arena_t *a, const nb_arena_ref_t *ref);

/* Starts a new epoch: empties the arena without touching the data (only the
 * ref slots used this epoch are cleared). Refs from before the reset read as
 * NB_ESTALE. Returns the new epoch. */
uint64_t nb_arena_reset(nb_arena_t *a);

/* Returns the current epoch, the bytes in use, and the data capacity. */
uint64_t nb_arena_epoch(const nb_arena_t *a);
size_t nb_arena_used(const nb_arena_t *a);
size_t nb_arena_capacity(const nb_arena_t *a);

/* Builds a spike payload of any length: inline when len <= 46, else in the
 * arena with a ref (a may be NULL only for inline payloads, NB_ENOSPACE
 * otherwise); returns 0 or an error from nb_arena_alloc. */
int nb_arena_put_payload(nb_arena_t *a, nb_spike_t *s, const void *data,
                         size_t len);

/* Points *data and *len at a spike's payload wherever it lives (inline or in
 * the arena); returns 0, NB_ESTALE, NB_EBOUNDS, or NB_EINVAL when the spike
 * holds a ref and a is NULL. */
int nb_arena_get_payload(const nb_arena_t *a, const nb_spike_t *s,
                         const void **data, size_t *len);

#endif
