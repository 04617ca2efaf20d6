/* Spike layout, meta packing, payload lengths, arena refs, and the error
 * map. */
#include "neuronbus.h"
#include "nbtest.h"

static void layout_is_the_seeds(void) {
  NBT_EQ(sizeof(nb_spike_t), 64);
  NBT_EQ(_Alignof(nb_spike_t), 64);
  NBT_EQ(offsetof(nb_spike_t, priority), 17);
  NBT_EQ(offsetof(nb_spike_t, payload), 18);
  nb_spike_t a[2];
  NBT_EQ((uintptr_t)&a[1] - (uintptr_t)&a[0], 64);
  NBT_EQ((uintptr_t)&a[0] % 64, 0);
}

static void builders_and_accessors(void) {
  nb_spike_t s;
  nb_spike_init(&s, 7, NB_INHIBITORY, 200);
  NBT_EQ(s.target, 7);
  NBT_EQ(nb_spike_kind(&s), NB_INHIBITORY);
  NBT_EQ(s.priority, 200);
  NBT_EQ(nb_spike_inline_len(&s), 0);
  NBT_EQ(nb_spike_set_kind(&s, NB_MODULATORY), 0);
  NBT_EQ(nb_spike_kind(&s), NB_MODULATORY);
  NBT_EQ(nb_spike_set_kind(&s, (nb_kind_t)3), NB_EINVAL);
  NBT_EQ(nb_spike_kind(&s), NB_MODULATORY);
}

static void payloads_keep_their_exact_length(void) {
  nb_spike_t s;
  uint8_t buf[47];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i == 3 ? 0 : 0xA0 + i);
  size_t lens[] = {0, 1, 4, 45, 46};
  for (size_t i = 0; i < 5; i++) {
    nb_spike_init(&s, 1, NB_EXCITATORY, 0);
    NBT_EQ(nb_spike_set_payload(&s, buf, lens[i]), 0);
    NBT_EQ(nb_spike_inline_len(&s), lens[i]);
    NBT_EQ(nb_spike_kind(&s), NB_EXCITATORY);
    NBT_CHECK(!nb_spike_is_ref(&s));
    NBT_CHECK(memcmp(s.payload, buf, lens[i]) == 0);
  }
  /* An inline payload starting with the marker byte is not a reference. */
  NBT_EQ(nb_spike_set_payload(&s, buf, 5), 0);
  NBT_EQ(s.payload[0], NB_ARENA_MARKER);
  nb_arena_ref_t r;
  NBT_EQ(nb_spike_get_ref(&s, &r), NB_ENOTREF);
  NBT_EQ(nb_spike_set_payload(&s, buf, 47), NB_ETOOBIG);
  NBT_EQ(nb_spike_inline_len(&s), 5);
}

static void arena_refs_round_trip(void) {
  nb_spike_t s;
  nb_spike_init(&s, 2, NB_INHIBITORY, 9);
  nb_arena_ref_t r = {.offset = 0x1122334455667788ull, .len = 1000000,
                      .segment = 65535, .gen = 42}, back;
  NBT_EQ(nb_spike_set_ref(&s, &r), 0);
  NBT_CHECK(nb_spike_is_ref(&s));
  NBT_EQ(nb_spike_kind(&s), NB_INHIBITORY);
  NBT_EQ(nb_spike_inline_len(&s), 0);
  NBT_EQ(s.meta >> 2, 63);
  NBT_EQ(nb_spike_get_ref(&s, &back), 0);
  NBT_CHECK(memcmp(&r, &back, sizeof r) == 0);
}

static void bytes_round_trip_and_validate(void) {
  nb_spike_t s, t;
  nb_spike_init(&s, 3, NB_EXCITATORY, 1);
  s.timestamp_ns = 123456789;
  s.sequence = 77;
  s.source = 5;
  nb_spike_set_payload(&s, "hello", 5);
  const uint8_t *b = nb_spike_as_bytes(&s);
  NBT_EQ((const void *)b == (const void *)&s, 1);
  NBT_EQ(nb_spike_from_bytes(&t, b), 0);
  NBT_CHECK(memcmp(&s, &t, 64) == 0);
  uint8_t bad[64];
  memcpy(bad, b, 64);
  bad[16] = 3; /* kind 3 */
  NBT_EQ(nb_spike_from_bytes(&t, bad), NB_EINVAL);
  bad[16] = (uint8_t)(50 << 2); /* length 50 */
  NBT_EQ(nb_spike_from_bytes(&t, bad), NB_EINVAL);
  bad[16] = (uint8_t)(63 << 2);
  bad[18] = 0; /* ref without marker */
  NBT_EQ(nb_spike_from_bytes(&t, bad), NB_EINVAL);
}

static void error_map_names_every_code(void) {
  NBT_CHECK(strcmp(nb_strerror(0), "ok") == 0);
  NBT_CHECK(strcmp(nb_err_name(NB_EFULL), "NB_EFULL") == 0);
  NBT_CHECK(strstr(nb_strerror(NB_ESTALE), "freed or reused") != NULL);
  NBT_CHECK(strcmp(nb_strerror(-999), "unknown error") == 0);
#define XX(name, code, text) NBT_CHECK((code) < 0 && strcmp(nb_strerror(code), text) == 0);
  NB_ERR_MAP(XX)
#undef XX
}

static const nbt_test_t tests[] = {
    NBT_TEST(layout_is_the_seeds),
    NBT_TEST(builders_and_accessors),
    NBT_TEST(payloads_keep_their_exact_length),
    NBT_TEST(arena_refs_round_trip),
    NBT_TEST(bytes_round_trip_and_validate),
    NBT_TEST(error_map_names_every_code),
};

int main(int argc, char **argv) { return NBT_MAIN(argc, argv, tests, NULL); }
