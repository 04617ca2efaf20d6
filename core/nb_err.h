/* nb_err.h: the one error map of NeuronBus.
 *
 * Every fallible call returns 0 on success or one negative nb_err_t below.
 * The map generates both the enum and nb_strerror(), so a code and its text
 * can never drift apart. */
#ifndef NB_ERR_H
#define NB_ERR_H

#define NB_ERR_MAP(XX)                                                        \
  XX(INVAL,     -1,  "invalid argument")                                      \
  XX(NOMEM,     -2,  "out of memory")                                         \
  XX(FULL,      -3,  "full: a reader has not consumed the slot")              \
  XX(EMPTY,     -4,  "empty: no spike available")                             \
  XX(LAPPED,    -5,  "reader was lapped: spikes were overwritten unread")     \
  XX(NOSPACE,   -6,  "arena full: every segment holds live payloads")        \
  XX(KEEPS,     -7,  "too many payloads kept (the agent's keep_max)")         \
  XX(STALE,     -8,  "stale arena reference: its segment was freed or reused")\
  XX(BOUNDS,    -9,  "arena reference out of bounds")                         \
  XX(BADMAGIC,  -10, "not a NeuronBus arena file (bad magic number)")         \
  XX(BADVER,    -11, "arena file has an unsupported version")                 \
  XX(TRUNC,     -12, "arena file is truncated or its size does not match")    \
  XX(IO,        -13, "I/O error")                                             \
  XX(NOENT,     -14, "no such neuron")                                        \
  XX(EXIST,     -15, "name already registered")                               \
  XX(LIMIT,     -16, "limit reached (too many neurons, readers or synapses)") \
  XX(FRAME,     -17, "malformed frame")                                       \
  XX(NOTREF,    -18, "spike payload is not an arena reference")               \
  XX(TOOBIG,    -19, "payload too large")                                     \
  XX(CLOSED,    -20, "closed")                                                \
  XX(TIMEDOUT,  -21, "timed out")                                             \
  XX(AGENT,     -22, "agent callback failed")                                 \
  XX(MEMLIMIT,  -23, "memory limit of the agent state exceeded")              \
  XX(BUDGET,    -24, "time budget of the agent entry exceeded")              \
  XX(CSTACK,    -25, "C stack overflow in agent code")                       \
  XX(BUSY,      -26, "busy: another thread holds it")                       \
  XX(PERM,      -27, "not permitted")

typedef enum nb_err_e {
  NB_OK = 0,
#define NB__ERR_ENUM(name, code, text) NB_E##name = (code),
  NB_ERR_MAP(NB__ERR_ENUM)
#undef NB__ERR_ENUM
} nb_err_t;

/* Returns a static, human-readable text for err (0 gives "ok"; an unknown
 * code gives "unknown error"). Never NULL. */
const char *nb_strerror(int err);

/* Returns the symbolic name of err ("NB_EFULL"), or "NB_UNKNOWN". */
const char *nb_err_name(int err);

#endif
