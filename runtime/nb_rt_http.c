/* nb_rt_http.c: HTTP and HTTPS requests of agents' tasks (nb.http), run
 * by libcurl's multi interface on the runtime's libuv loop: the documented
 * integration (libcurl's docs/examples/multi-uv.c). curl tells us which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION: one uv_poll_t each) and when
 * to wake it (CURLMOPT_TIMERFUNCTION: one uv_timer_t); the loop calls
 * curl_multi_socket_action back. No thread, no blocking call.
 *
 * One CURLM per runtime, made by the first request (so its connection
 * cache serves every agent), one easy handle per request, its nb__req_t
 * first. A plain request ends in one final event: status = the HTTP
 * status, data = the body (at most NB__HTTP_BODY_MAX bytes: past it the
 * transfer fails with NB_ETOOBIG), data2 = the response's headers as
 * "Name: value\r\n" lines. A stream reports the headers first (a
 * non-final event without data), then each chunk of the body as it
 * arrives, then a final event without data. A failure is a final event
 * with code = a negative nb_err_t (NB_ETIMEDOUT, NB_EIO, NB_EINVAL,
 * NB_ETOOBIG) and msg = "METHOD URL: curl's error text".
 *
 * HTTPS verifies the server's certificate chain and host name against the
 * system's CAs, or against the request's cafile alone (CURLOPT_CAINFO,
 * with the CA directory off); insecure turns both checks off (tests). A
 * failed verification's message says how to trust the server.
 *
 * Cancelling (the task cancelled, its agent restarted or stopped, the
 * runtime stopping) takes the easy handle out of the multi and frees it
 * at once: an easy handle owns no loop handle. nb__http_stop, called when
 * the runtime's requests stop, cleans the multi up (its cached
 * connections close) and closes the poll handles and the timer; the last
 * close frees the state.
 *
 * Threads: everything here runs on the runtime's thread. */
#include "nb_rt_internal.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#define NB__HTTP_BODY_MAX (64u << 20) /* bytes of a plain request's body */
#define NB__HTTP_HEAD_MAX (1u << 20)  /* bytes of a response's headers */
/* Bytes a stream delivers that its task has not read yet: past this the
 * transfer pauses (TCP then pushes back on the server) until the task
 * has read half of them. An unread stream costs at most this memory. */
#define NB__HTTP_STREAM_UNREAD (1u << 20)

typedef struct nb__http_s {
  CURLM *multi;
  uv_timer_t timer;
  uv_loop_t *loop;
  nb_rt_t *rt;
  int closing;        /* nb__http_stop ran: the handles are closing */
  uint32_t handles;   /* open uv handles (timer + polls): freed at 0 */
} http_t;

typedef struct buf_s {
  char *p;
  size_t n, cap;
} buf_t;

typedef struct http_req_s {
  nb__req_t r; /* first */
  http_t *h;
  CURL *easy;
  struct curl_slist *hdrs;
  char *what;   /* "METHOD URL" for messages */
  buf_t body, head;
  long status;  /* of the response the headers are collected for */
  int stream;
  int follow;
  int head_sent; /* stream: the headers event went out */
  int too_big;
  int paused;    /* stream: on_body paused the transfer (too much unread) */
  size_t unread; /* stream: bytes delivered that the task has not read */
  char err[CURL_ERROR_SIZE];
} http_req_t;

typedef struct poll_ctx_s {
  uv_poll_t poll;
  curl_socket_t fd;
  http_t *h;
} poll_ctx_t;

static int curl_ready = -1; /* curl_global_init's result, once */

/* ---- buffers ---- */

/* Appends len bytes to b (never past max); returns 0, or -1 past max or
 * without memory. */
static int buf_add(buf_t *b, const char *p, size_t len, size_t max) {
  if (b->n + len > max) return -1;
  if (b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + len + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, len);
  b->n += len;
  return 0;
}

/* ---- the state's handles ---- */

/* One handle of h closed: the state goes with the last. */
static void handle_closed(http_t *h) {
  if (--h->handles == 0 && h->closing) free(h);
}

static void poll_closed(uv_handle_t *p) {
  poll_ctx_t *c = p->data;
  http_t *h = c->h;
  free(c);
  handle_closed(h);
}

static void timer_closed(uv_handle_t *t) { handle_closed(t->data); }

/* ---- requests ---- */

/* Frees a request that is out of the multi (or never was in it). */
static void req_free(http_req_t *q) {
  if (q->easy) curl_easy_cleanup(q->easy);
  curl_slist_free_all(q->hdrs);
  free(q->what);
  free(q->body.p);
  free(q->head.p);
  free(q);
}

/* Removes q's easy handle from the multi and frees q. */
static void req_drop(http_req_t *q) {
  if (q->easy && q->h && q->h->multi) curl_multi_remove_handle(q->h->multi, q->easy);
  req_free(q);
}

/* Cancel (nb_rt_async.c): nothing is delivered after; freed at once. */
static void req_cancel(nb__req_t *r) { req_drop((http_req_t *)r); }

/* Stream: sends the headers event once. */
static void send_head(http_req_t *q) {
  if (q->head_sent) return;
  q->head_sent = 1;
  nb__req_event(&q->r, (int32_t)q->status, 0, NULL, 0, q->head.p ? q->head.p : "",
                q->head.n, NULL, 0);
}

/* CURLOPT_HEADERFUNCTION: keeps the header lines of the last response (a
 * status line starts over: 100 Continue, redirects). */
static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  http_req_t *q = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    q->head.n = 0;
    return len;
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) { /* the end of a head */
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
    int redirect = q->follow && q->status >= 300 && q->status < 400;
    if (q->stream && q->status >= 200 && !redirect) send_head(q);
    return len;
  }
  if (buf_add(&q->head, p, len, NB__HTTP_HEAD_MAX) != 0) {
    q->too_big = 1;
    return 0;
  }
  return len;
}

/* CURLOPT_WRITEFUNCTION: a stream hands each chunk on; a plain request
 * collects the body up to its maximum. */
static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  http_req_t *q = ud;
  size_t len = size * n;
  if (q->stream) {
    if (!q->head_sent) {
      curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
      send_head(q);
    }
    if (q->unread >= NB__HTTP_STREAM_UNREAD) {
      q->paused = 1;
      return CURL_WRITEFUNC_PAUSE; /* curl hands this chunk again later */
    }
    q->unread += len;
    nb__req_event(&q->r, (int32_t)q->status, 0, p, len, NULL, 0, NULL, 0);
    return len;
  }
  if (buf_add(&q->body, p, len, NB__HTTP_BODY_MAX) != 0) {
    q->too_big = 1;
    return 0; /* CURLE_WRITE_ERROR */
  }
  return len;
}

/* The stream's task read len bytes: a paused transfer goes on once half
 * of the unread limit is free. Returns nothing. */
static void stream_consumed(nb__req_t *r, size_t len) {
  http_req_t *q = (http_req_t *)r;
  q->unread = len < q->unread ? q->unread - len : 0;
  if (q->paused && q->unread <= NB__HTTP_STREAM_UNREAD / 2) {
    q->paused = 0;
    /* May deliver the held chunk at once (on_body, no Lua runs). */
    curl_easy_pause(q->easy, CURLPAUSE_CONT);
  }
}

/* Returns the nb_err_t for a failed transfer. */
static int err_of(CURLcode c, const http_req_t *q) {
  if (q->too_big) return NB_ETOOBIG;
  switch (c) {
  case CURLE_OPERATION_TIMEDOUT: return NB_ETIMEDOUT;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL: return NB_EINVAL;
  case CURLE_OUT_OF_MEMORY: return NB_ENOMEM;
  default: return NB_EIO;
  }
}

/* A transfer ended: its final event, then it goes. */
static void req_done(http_req_t *q, CURLcode c) {
  if (c == CURLE_OK && !q->too_big) {
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    q->status = status;
    if (q->stream) {
      send_head(q);
      nb__req_event(&q->r, (int32_t)status, 0, NULL, 0, NULL, 0, NULL, 1);
    } else {
      nb__req_event(&q->r, (int32_t)status, 0, q->body.p ? q->body.p : "",
                    q->body.n, q->head.p ? q->head.p : "", q->head.n, NULL, 1);
    }
  } else {
    const char *why = q->too_big
        ? (q->stream ? "the response's headers are over 1 MiB"
                     : "the response's body is over 64 MiB (nb.http's maximum; "
                       "use nb.http.stream for more)")
        : (q->err[0] ? q->err : curl_easy_strerror(c));
    const char *hint = c == CURLE_PEER_FAILED_VERIFICATION
        ? " (the server's certificate or host name did not verify: check the "
          "URL's host, or trust its CA with cafile)"
        : "";
    char *msg = nb__strf("%s: %s%s", q->what, why, hint);
    nb__req_event(&q->r, (int32_t)q->status, err_of(c, q), NULL, 0, NULL, 0,
                  msg, 1);
    free(msg);
  }
  req_drop(q);
}

/* Takes every finished transfer off the multi. */
static void check_done(http_t *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    http_req_t *q = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
    if (q) req_done(q, m->data.result);
  }
}

/* ---- curl on the loop ---- */

static void on_poll(uv_poll_t *p, int status, int events) {
  poll_ctx_t *c = p->data;
  http_t *h = c->h;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(h->multi, c->fd, flags, &running);
  check_done(h);
}

static void on_timeout(uv_timer_t *t) {
  http_t *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(h);
}

/* CURLMOPT_TIMERFUNCTION: when curl wants to be called (-1: never). */
static int on_curl_timer(CURLM *m, long ms, void *ud) {
  http_t *h = ud;
  if (h->closing) return 0;
  if (ms < 0) uv_timer_stop(&h->timer);
  else uv_timer_start(&h->timer, on_timeout, ms ? (uint64_t)ms : 1, 0);
  return 0;
}

/* CURLMOPT_SOCKETFUNCTION: which socket to watch, for what. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *ud,
                          void *sockp) {
  http_t *h = ud;
  poll_ctx_t *c = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      uv_poll_stop(&c->poll);
      curl_multi_assign(h->multi, fd, NULL);
      uv_close((uv_handle_t *)&c->poll, poll_closed);
    }
    return 0;
  }
  if (!c) {
    c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->fd = fd;
    c->h = h;
    if (uv_poll_init_socket(h->loop, &c->poll, fd) != 0) {
      free(c);
      return -1;
    }
    c->poll.data = c;
    h->handles++;
    curl_multi_assign(h->multi, fd, c);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  uv_poll_start(&c->poll, ev, on_poll);
  return 0;
}

/* Returns rt's HTTP state, made on first use, or NULL (curl or memory
 * failed). */
static http_t *http_of(nb_rt_t *rt, void *loop) {
  if (rt->http) return rt->http;
  if (curl_ready < 0) curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) return NULL;
  http_t *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->multi = curl_multi_init();
  if (!h->multi) {
    free(h);
    return NULL;
  }
  h->loop = loop;
  h->rt = rt;
  uv_timer_init(h->loop, &h->timer);
  h->timer.data = h;
  /* Ref'd: a loop with nothing else alive must still run curl's timeouts
   * (curl stops the timer when no transfer is left). */
  h->handles = 1;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  nb__async_on_stop(rt, nb__http_stop); /* the runtime's stop cleans it up */
  rt->http = h;
  return h;
}

/* Splits "Name: value" lines (separated by '\n') into q's header list;
 * returns 0 or -1 without memory. */
static int add_headers(http_req_t *q, const char *p, size_t len) {
  /* Expect: 100-continue would wait a second for servers that ignore it. */
  struct curl_slist *l = curl_slist_append(NULL, "Expect:");
  if (!l) return -1;
  q->hdrs = l;
  size_t i = 0;
  while (p && i < len) {
    size_t j = i;
    while (j < len && p[j] != '\n') j++;
    if (j > i) {
      char *line = nb__strf("%.*s", (int)(j - i), p + i);
      l = curl_slist_append(q->hdrs, line);
      free(line);
      if (!l) return -1;
      q->hdrs = l;
    }
    i = j + 1;
  }
  return 0;
}

int64_t nb_rt_http(nb_rt_cell_t *cell, const nb_rt_http_req_t *in) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__agent_t *a = (nb__agent_t *)cell;
  if (!in || !in->url || !in->method || !in->method[0]) return NB_EINVAL;
  if (in->cafile && a->allow) return NB_EINVAL; /* the sandbox reads no file */
  http_req_t *q = (http_req_t *)nb__req_new(a, sizeof *q, req_cancel);
  if (!q) return NB_ECLOSED; /* the runtime stops (or memory ran out) */
  http_t *h = http_of(a->rt, q->r.loop);
  int rc = NB_ENOMEM;
  if (!h || h->closing) goto fail;
  q->h = h;
  q->stream = in->stream != 0;
  if (q->stream) q->r.consumed = stream_consumed;
  q->follow = in->follow != 0;
  q->what = nb__strf("%s %s", in->method, in->url);
  q->easy = curl_easy_init();
  if (!q->easy || add_headers(q, in->headers, in->headers_len) != 0) goto fail;
  CURL *e = q->easy;
  curl_easy_setopt(e, CURLOPT_URL, in->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, q);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->err);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* what curl decodes */
  if (in->cafile) { /* these CAs instead of the system's */
    curl_easy_setopt(e, CURLOPT_CAINFO, in->cafile);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
  }
  if (in->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (in->timeout_ns)
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)((in->timeout_ns + 999999u) / 1000000u));
  if (q->follow) {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
  }
  if (in->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)in->body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, in->body);
  }
  if (strcmp(in->method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(in->method, "GET") == 0 && !in->body)
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  else if (strcmp(in->method, "POST") != 0 || !in->body)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, in->method);
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) goto fail;
  return q->r.id;
fail:
  nb_rt_cancel(cell, q->r.id); /* off the agent's list, then req_cancel frees */
  return rc;
}

/* ---- stopping ---- */

void nb__http_stop(nb_rt_t *rt) {
  http_t *h = rt->http;
  if (!h) return;
  rt->http = NULL;
  h->closing = 1;
  /* Every request was cancelled before: only cached connections are left.
   * The cleanup closes them (each poll handle closes through
   * CURL_POLL_REMOVE); then the timer closes, and the last close frees h. */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, timer_closed);
}
