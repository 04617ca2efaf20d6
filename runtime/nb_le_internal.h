/* nb_le_internal.h: little-endian integers in wire bytes, shared by the
 * TCP link's codec (nb_link_wire.c) and the NATS messages' (nb_nats_wire.c,
 * nb_link_nats.c). Not installed. */
#ifndef NB_LE_INTERNAL_H
#define NB_LE_INTERNAL_H

#include <stdint.h>

/* Stores v little-endian at p; returns nothing. */
static inline void nb__put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
/* Stores v little-endian at p; returns nothing. */
static inline void nb__put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
/* Stores v little-endian at p; returns nothing. */
static inline void nb__put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
/* Returns the little-endian u16 at p. */
static inline uint16_t nb__get16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
/* Returns the little-endian u32 at p. */
static inline uint32_t nb__get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}
/* Returns the little-endian u64 at p. */
static inline uint64_t nb__get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

#endif
