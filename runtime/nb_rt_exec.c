/* nb_rt_exec.c: processes for agents' tasks (nb.exec): one uv_spawn per
 * request on the runtime's loop, with pipes for stdin, stdout and stderr.
 *
 * No shell: the command is a name looked up on the runtime's own PATH
 * (like execvp, but never the PATH of the env the agent passes), or a path
 * (relative ones to cwd), run with its arguments as given. The child
 * starts its own process group (setsid), so a kill reaches whatever it
 * started too. The env entries are applied to the runtime's environment
 * (set or removed); cwd and stdin are optional.
 *
 * The request's one event comes once the process exited and both output
 * pipes are closed: status = the exit status (128 + signal), data =
 * stdout, data2 = stderr. At its timeout the group gets SIGTERM and, after
 * NB_EXEC_GRACE_NS, SIGKILL: code NB_ETIMEDOUT. A stream past
 * NB_EXEC_OUTPUT_MAX bytes gets the group SIGKILL: code NB_ETOOBIG (the
 * output kept so far is in the event). A cancel (the task cancelled, the
 * agent's state closing, the runtime stopping) sends SIGKILL to the
 * group, closes every handle, and reaps the child before it returns (it
 * waits up to REAP_WAIT_MS for it to die): no child outlives the runtime's
 * stop, none is left a zombie.
 *
 * Threads: the runtime's thread. */
#include "nb_rt_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "nb_rt_defaults.h"

extern char **environ;

#define READ_CHUNK (64u << 10) /* the least room offered to a read */
#define REAP_WAIT_MS 500       /* a cancel waits this long for a killed child */
#define REAP_LATER 64          /* killed children still to reap, at most */

typedef struct out_s {
  char *p;
  size_t n, cap;
} out_t;

typedef struct exec_req_s {
  nb__req_t r;
  uv_process_t proc;
  uv_pipe_t in, out[2];
  uv_timer_t timer; /* the timeout, then the grace before SIGKILL */
  uv_write_t wr;
  char *cmd;        /* as the agent gave it, for messages */
  char *stdin_data;
  size_t stdin_len;
  out_t buf[2];     /* stdout, stderr */
  uint64_t timeout_ns;
  int pid;
  int open;         /* handles not closed yet (the request is freed at 0) */
  int in_open, out_open[2], timer_on, proc_on;
  int exited, done, cancelled;
  int64_t exit_status;
  int term_signal;
  int timed_out;    /* 1 after the timeout; 2 once SIGKILL followed */
  int too_big;      /* 1 + the stream that passed NB_EXEC_OUTPUT_MAX, or 0 */
} exec_req_t;

/* Children killed by a cancel that did not die in REAP_WAIT_MS. */
static int reap_later[REAP_LATER];
static int nreap_later;

/* Reaps the children left to reap later that have died; returns nothing. */
static void reap_leftovers(void) {
  for (int i = 0; i < nreap_later;) {
    if (waitpid(reap_later[i], NULL, WNOHANG) != 0) {
      reap_later[i] = reap_later[--nreap_later];
    } else {
      i++;
    }
  }
}

/* Kills the process group of x's child (and the child itself); returns
 * nothing. */
static void kill_group(exec_req_t *x, int sig) {
  if (x->pid <= 0 || x->exited) {
    if (x->pid > 0) kill(-x->pid, sig); /* what it started may live on */
    return;
  }
  kill(-x->pid, sig);
  kill(x->pid, sig);
}

/* Frees x (its handles closed, or never opened); returns nothing. */
static void req_free(exec_req_t *x) {
  free(x->cmd);
  free(x->stdin_data);
  free(x->buf[0].p);
  free(x->buf[1].p);
  free(x);
}

/* A handle of x is closed: frees x after the last one. */
static void on_closed(uv_handle_t *h) {
  exec_req_t *x = h->data;
  if (--x->open == 0) req_free(x);
}

/* Closes handle h of x once; returns nothing. */
static void close_one(exec_req_t *x, uv_handle_t *h, int *on) {
  if (!*on) return;
  *on = 0;
  uv_close(h, on_closed);
}

/* Stops and closes the output pipe i; returns nothing. */
static void close_out(exec_req_t *x, int i) {
  if (x->out_open[i]) uv_read_stop((uv_stream_t *)&x->out[i]);
  close_one(x, (uv_handle_t *)&x->out[i], &x->out_open[i]);
}

/* Closes every handle of x; returns nothing. */
static void close_all(exec_req_t *x) {
  close_one(x, (uv_handle_t *)&x->in, &x->in_open);
  close_out(x, 0);
  close_out(x, 1);
  if (x->timer_on) uv_timer_stop(&x->timer);
  close_one(x, (uv_handle_t *)&x->timer, &x->timer_on);
  close_one(x, (uv_handle_t *)&x->proc, &x->proc_on);
}

/* Formats a duration in ns as "2s", "250ms" or "1.5s"; returns buf. */
static const char *dur(char *buf, size_t n, uint64_t ns) {
  if (ns % 1000000000u == 0)
    snprintf(buf, n, "%llus", (unsigned long long)(ns / 1000000000u));
  else if (ns % 1000000u == 0 && ns < 1000000000u)
    snprintf(buf, n, "%llums", (unsigned long long)(ns / 1000000u));
  else
    snprintf(buf, n, "%.3gs", (double)ns / 1e9);
  return buf;
}

/* Delivers x's one event once the child exited and both output pipes are
 * closed, then closes the rest; returns nothing. */
static void maybe_done(exec_req_t *x) {
  if (x->done || !x->exited || x->out_open[0] || x->out_open[1]) return;
  x->done = 1;
  int32_t status = x->term_signal ? 128 + x->term_signal : (int32_t)x->exit_status;
  int32_t code = 0;
  char *msg = NULL;
  char t[32];
  if (x->too_big) {
    code = NB_ETOOBIG;
    msg = nb__strf("nb.exec: %s: %s passed %u bytes (the most nb.exec keeps "
                   "of a stream): the process was killed", x->cmd,
                   x->too_big == 1 ? "stdout" : "stderr", NB_EXEC_OUTPUT_MAX);
  } else if (x->timed_out) {
    code = NB_ETIMEDOUT;
    msg = nb__strf("nb.exec: %s timed out after %s: killed with %s", x->cmd,
                   dur(t, sizeof t, x->timeout_ns),
                   x->timed_out > 1 ? "SIGTERM, then SIGKILL" : "SIGTERM");
  } else if (x->term_signal) {
    msg = nb__strf("signal %d", x->term_signal);
  }
  nb__req_event(&x->r, status, code, x->buf[0].p, x->buf[0].n, x->buf[1].p,
                x->buf[1].n, msg, 1);
  free(msg);
  close_all(x);
}

/* The child exited (libuv reaped it). */
static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  exec_req_t *x = p->data;
  x->exited = 1;
  x->exit_status = status;
  x->term_signal = sig;
  if (x->timed_out || x->too_big) {
    /* Killed by us: what it started goes too, its output is not awaited. */
    kill_group(x, SIGKILL);
    close_out(x, 0);
    close_out(x, 1);
  }
  maybe_done(x);
}

/* Offers room for a read of output pipe h. */
static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b) {
  exec_req_t *x = h->data;
  out_t *o = &x->buf[(uv_pipe_t *)h == &x->out[1]];
  (void)want;
  if (o->cap - o->n < READ_CHUNK) {
    size_t cap = o->cap ? o->cap * 2 : 2 * READ_CHUNK;
    while (cap - o->n < READ_CHUNK) cap *= 2;
    char *p = realloc(o->p, cap);
    if (!p) {
      *b = uv_buf_init(NULL, 0); /* UV_ENOBUFS: the read ends */
      return;
    }
    o->p = p;
    o->cap = cap;
  }
  *b = uv_buf_init(o->p + o->n, (unsigned)(o->cap - o->n));
}

/* Output arrived on pipe s (or it ended). */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  exec_req_t *x = s->data;
  int i = (uv_pipe_t *)s == &x->out[1];
  out_t *o = &x->buf[i];
  (void)b;
  if (n > 0) {
    o->n += (size_t)n;
    if (o->n > NB_EXEC_OUTPUT_MAX) {
      o->n = NB_EXEC_OUTPUT_MAX;
      if (!x->too_big) x->too_big = 1 + i;
      kill_group(x, SIGKILL);
      close_out(x, 0);
      close_out(x, 1);
    }
  } else if (n < 0) {
    close_out(x, i); /* UV_EOF, or an error: this stream is over */
  }
  maybe_done(x);
}

/* The grace after SIGTERM ran out: SIGKILL. */
static void on_grace(uv_timer_t *t) {
  exec_req_t *x = t->data;
  x->timed_out = 2;
  kill_group(x, SIGKILL);
}

/* The timeout: SIGTERM, then SIGKILL after the grace. */
static void on_timeout(uv_timer_t *t) {
  exec_req_t *x = t->data;
  x->timed_out = 1;
  if (x->exited) {
    /* Exited, but something it started holds the pipes open. */
    kill_group(x, SIGKILL);
    close_out(x, 0);
    close_out(x, 1);
    maybe_done(x);
    return;
  }
  kill_group(x, SIGTERM);
  uv_timer_start(&x->timer, on_grace, (NB_EXEC_GRACE_NS + 999999u) / 1000000u, 0);
}

/* stdin was written (or the child stopped reading it): EOF for it. */
static void on_written(uv_write_t *w, int status) {
  exec_req_t *x = w->data;
  (void)status;
  close_one(x, (uv_handle_t *)&x->in, &x->in_open);
}

/* Cancel: SIGKILL to the group, every handle closed, the child reaped
 * (libuv no longer will once its handle is closed). */
static void exec_cancel(nb__req_t *r) {
  exec_req_t *x = (exec_req_t *)r;
  x->cancelled = 1;
  int reap = x->pid > 0 && !x->exited;
  kill_group(x, SIGKILL);
  close_all(x);
  if (!reap) return;
  for (int i = 0; i < REAP_WAIT_MS; i++) {
    int rc = waitpid(x->pid, NULL, WNOHANG);
    if (rc != 0) return; /* reaped (or not ours to reap) */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  if (nreap_later < REAP_LATER) reap_later[nreap_later++] = x->pid;
}

/* Returns a malloc'd absolute path of the executable cmd found on the
 * runtime's PATH (cmd has no slash), or NULL. */
static char *on_path(const char *cmd) {
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  char *copy = nb__strdup(path), *save = NULL, *found = NULL;
  for (char *d = strtok_r(copy, ":", &save); d && !found;
       d = strtok_r(NULL, ":", &save)) {
    char *f = nb__strf("%s/%s", *d ? d : ".", cmd);
    struct stat st;
    if (stat(f, &st) == 0 && S_ISREG(st.st_mode) && access(f, X_OK) == 0)
      found = f;
    else
      free(f);
  }
  free(copy);
  return found;
}

/* Returns the environment for the child: environ with the entries of env
 * applied ("NAME=VALUE" sets, "NAME" removes), malloc'd (the array only:
 * its strings belong to environ and env), or NULL when env is NULL. */
static char **child_env(const char **env) {
  if (!env) return NULL;
  size_t n = 0, m = 0;
  while (environ[n]) n++;
  while (env[m]) m++;
  char **v = calloc(n + m + 1, sizeof *v);
  if (!v) abort();
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int replaced = 0;
    for (size_t j = 0; j < m && !replaced; j++) {
      const char *e = strchr(env[j], '=');
      size_t l = e ? (size_t)(e - env[j]) : strlen(env[j]);
      replaced = l == len && !strncmp(env[j], environ[i], len);
    }
    if (!replaced) v[k++] = environ[i];
  }
  for (size_t j = 0; j < m; j++)
    if (strchr(env[j], '=')) v[k++] = (char *)env[j];
  return v;
}

/* Ends a request that never started: its one event says why; returns its
 * id (the event is already queued for the task that waits on it). */
static int64_t fail_now(exec_req_t *x, int32_t code, char *msg) {
  int64_t id = x->r.id;
  nb__req_event(&x->r, -1, code, NULL, 0, NULL, 0, msg, 1);
  free(msg);
  req_free(x); /* no handle was opened */
  return id;
}

/* Ignores SIGPIPE once (a child that stops reading its stdin must not
 * kill the runtime), unless someone set a handler; returns nothing. */
static void ignore_sigpipe(void) {
  static int done;
  if (done) return;
  done = 1;
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
}

int64_t nb_rt_exec(nb_rt_cell_t *cell, const char *cmd, const char **args,
                   const char **env, const char *cwd, const char *stdin_data,
                   size_t stdin_len, int has_stdin, uint64_t timeout_ns) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  nb__agent_t *a = (nb__agent_t *)cell;
  if (!cmd || !*cmd) return NB_EINVAL;
  reap_leftovers();
  exec_req_t *x = (exec_req_t *)nb__req_new(a, sizeof *x, exec_cancel);
  if (!x) return a->rt->stopped ? NB_ECLOSED : NB_ENOMEM;
  x->cmd = nb__strdup(cmd);
  x->timeout_ns = timeout_ns;
  char *why = nb__allow_cmd(a, cmd);
  if (why) return fail_now(x, NB_EINVAL, why);
  char *file = strchr(cmd, '/') ? nb__strdup(cmd) : on_path(cmd);
  if (!file)
    return fail_now(x, NB_ENOENT,
                    nb__strf("nb.exec: %s: command not found (not on the "
                             "runtime's PATH)", cmd));
  if (cwd) {
    struct stat st;
    int bad = stat(cwd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (bad) {
      free(file);
      return fail_now(x, NB_ENOENT, nb__strf("nb.exec: %s: cwd %s: %s", cmd,
                                             cwd, strerror(bad)));
    }
  }
  size_t nargs = 0;
  while (args && args[nargs]) nargs++;
  char **argv = calloc(nargs + 2, sizeof *argv);
  if (!argv) abort();
  argv[0] = (char *)cmd;
  for (size_t i = 0; i < nargs; i++) argv[i + 1] = (char *)args[i];
  char **envp = child_env(env);

  uv_loop_t *loop = x->r.loop;
  uv_pipe_init(loop, &x->out[0], 0);
  uv_pipe_init(loop, &x->out[1], 0);
  uv_pipe_init(loop, &x->in, 0);
  uv_timer_init(loop, &x->timer);
  x->in.data = x->out[0].data = x->out[1].data = x->timer.data = x;
  x->proc.data = x->wr.data = x;
  x->open = 4;
  x->in_open = x->out_open[0] = x->out_open[1] = x->timer_on = 1;

  uv_stdio_container_t io[3];
  if (has_stdin) {
    ignore_sigpipe();
    io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    io[0].data.stream = (uv_stream_t *)&x->in;
  } else {
    io[0].flags = UV_IGNORE;
  }
  io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  io[1].data.stream = (uv_stream_t *)&x->out[0];
  io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  io[2].data.stream = (uv_stream_t *)&x->out[1];
  uv_process_options_t o = {
      .exit_cb = on_exit_cb,
      .file = file,
      .args = argv,
      .env = envp,
      .cwd = cwd,
      .flags = UV_PROCESS_DETACHED, /* setsid: its own process group */
      .stdio_count = 3,
      .stdio = io,
  };
  int rc = uv_spawn(loop, &x->proc, &o);
  free(argv);
  free(envp);
  if (rc != 0) {
    /* The handle is initialized even when uv_spawn fails: close it too. */
    char *msg = nb__strf("nb.exec: %s: %s", file, rc == UV_ENOENT
                         ? "no such file" : uv_strerror(rc));
    free(file);
    x->proc_on = 1;
    x->open++;
    nb__req_event(&x->r, -1, rc == UV_ENOENT ? NB_ENOENT : NB_EIO, NULL, 0,
                  NULL, 0, msg, 1);
    free(msg);
    x->done = x->exited = 1;
    close_all(x);
    return x->r.id;
  }
  free(file);
  x->proc_on = 1;
  x->open++;
  x->pid = x->proc.pid;
  uv_read_start((uv_stream_t *)&x->out[0], on_alloc, on_read);
  uv_read_start((uv_stream_t *)&x->out[1], on_alloc, on_read);
  if (has_stdin && stdin_len) {
    x->stdin_data = malloc(stdin_len);
    if (!x->stdin_data) abort();
    memcpy(x->stdin_data, stdin_data, stdin_len);
    x->stdin_len = stdin_len;
    uv_buf_t b = uv_buf_init(x->stdin_data, (unsigned)stdin_len);
    if (uv_write(&x->wr, (uv_stream_t *)&x->in, &b, 1, on_written) != 0)
      close_one(x, (uv_handle_t *)&x->in, &x->in_open);
  } else {
    close_one(x, (uv_handle_t *)&x->in, &x->in_open); /* EOF at once */
  }
  if (timeout_ns) {
    uv_update_time(loop);
    uv_timer_start(&x->timer, on_timeout, (timeout_ns + 999999u) / 1000000u, 0);
  }
  return x->r.id;
}
