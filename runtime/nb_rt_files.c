/* nb_rt_files.c: whole-file reads and writes for agents' tasks
 * (nb.files): a chain of uv_fs requests on the runtime's loop, so the
 * blocking I/O runs on libuv's threadpool and the loop thread never waits.
 *
 * A read opens, fstats and reads the file to its end (at most
 * NB_FILES_MAX bytes). A write is atomic: the bytes go to a temporary
 * file beside the target (".NAME.nbtmp-PID-N", created O_EXCL with mode
 * 0666 less the umask), which is fsynced, closed and renamed over the
 * target; on any failure the temporary file is removed.
 *
 * A sandboxed agent (a->allow, nb_rt_allow.c) reaches only the files
 * under its allowed directories: a read resolves the whole path with
 * realpath (a symlink is followed, then checked) and opens the resolved
 * path with O_NOFOLLOW; a write resolves the parent directory and writes
 * NAME in it (rename replaces a symlink there, never its target). So
 * neither ".." nor a symlink leads out.
 *
 * A cancel cannot stop a threadpool step already running: it marks the
 * request, the step's callback then closes the file and removes a
 * temporary one, and frees the request; nothing is delivered.
 *
 * Threads: the runtime's thread (the fs steps run on the threadpool). */
#include "nb_rt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "nb_rt_defaults.h"

enum { S_REAL, S_REAL_PARENT, S_OPEN, S_STAT, S_READ, S_WRITE, S_SYNC,
       S_CLOSE, S_RENAME };

typedef struct file_req_s {
  nb__req_t r;
  uv_fs_t fs;
  const char *what;   /* "nb.files.read" or "nb.files.write" */
  int writing;
  int step;           /* S_*: the fs request in flight */
  int cancelled;
  uv_file fd;         /* -1 when none is open */
  char *path;         /* as the agent gave it */
  char *target;       /* what is opened (read) or renamed over (write) */
  char *tmp;          /* the temporary file of a write, once created */
  char *base;         /* a write's file name (sandboxed: under the parent) */
  char *data;         /* bytes read, or to write */
  size_t n, cap;      /* bytes read or written so far; data's size */
  size_t len;         /* bytes to write */
  int err;            /* a sandboxed read's realpath error (libuv's) */
  int sandboxed;      /* the agent has allowlists (nb_rt_allow.c) */
} file_req_t;

static void step_done(uv_fs_t *fs);

/* Frees x, closing its file and removing its temporary file when it has
 * them (synchronously: an error or a cancel); returns nothing. */
static void req_free(file_req_t *x) {
  if (x->fd >= 0) close(x->fd);
  if (x->tmp) unlink(x->tmp);
  free(x->path);
  free(x->target);
  free(x->tmp);
  free(x->base);
  free(x->data);
  free(x);
}

/* Delivers x's one event (code 0: the bytes read, if reading) and frees
 * it; returns nothing. */
static void finish(file_req_t *x, int32_t code, char *msg) {
  if (code == 0 && !x->writing)
    nb__req_event(&x->r, 0, 0, x->data ? x->data : "", x->n, NULL, 0, NULL, 1);
  else
    nb__req_event(&x->r, code ? -1 : 0, code, NULL, 0, NULL, 0, msg, 1);
  free(msg);
  req_free(x);
}

/* Fails x with a libuv error uverr of the step that touched path. */
static void fail_uv(file_req_t *x, int uverr, const char *path) {
  int32_t code = uverr == UV_ENOENT ? NB_ENOENT : NB_EIO;
  finish(x, code, nb__strf("%s: %s: %s", x->what, path, uv_strerror(uverr)));
}

/* Starts the next step; returns nothing (a failed start fails x). */
static void go(file_req_t *x, int step) {
  uv_loop_t *loop = x->r.loop;
  int rc = 0;
  x->step = step;
  x->fs.data = x;
  switch (step) {
  case S_REAL:
    rc = uv_fs_realpath(loop, &x->fs, x->path, step_done);
    break;
  case S_REAL_PARENT: {
    char *slash = strrchr(x->path, '/');
    char *parent = slash == x->path ? nb__strdup("/")
                   : slash ? nb__strf("%.*s", (int)(slash - x->path), x->path)
                   : nb__strdup(".");
    rc = uv_fs_realpath(loop, &x->fs, parent, step_done);
    free(parent);
    break;
  }
  case S_OPEN:
    if (x->writing) {
      static unsigned serial;
      char *slash = strrchr(x->target, '/');
      x->tmp = nb__strf("%.*s.%s.nbtmp-%d-%u",
                        slash ? (int)(slash - x->target + 1) : 0, x->target,
                        slash ? slash + 1 : x->target, (int)getpid(), ++serial);
      rc = uv_fs_open(loop, &x->fs, x->tmp,
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0666, step_done);
    } else {
      rc = uv_fs_open(loop, &x->fs, x->target,
                      O_RDONLY | O_CLOEXEC | (x->sandboxed ? O_NOFOLLOW : 0),
                      0, step_done);
    }
    break;
  case S_STAT:
    rc = uv_fs_fstat(loop, &x->fs, x->fd, step_done);
    break;
  case S_READ: {
    if (x->cap - x->n < 4096) {
      size_t cap = x->cap ? x->cap * 2 : 65536;
      if (cap > (size_t)NB_FILES_MAX + 1) cap = (size_t)NB_FILES_MAX + 1;
      char *p = realloc(x->data, cap);
      if (!p) abort();
      x->data = p;
      x->cap = cap;
    }
    uv_buf_t b = uv_buf_init(x->data + x->n, (unsigned)(x->cap - x->n));
    rc = uv_fs_read(loop, &x->fs, x->fd, &b, 1, -1, step_done);
    break;
  }
  case S_WRITE: {
    uv_buf_t b = uv_buf_init(x->data + x->n, (unsigned)(x->len - x->n));
    rc = uv_fs_write(loop, &x->fs, x->fd, &b, 1, -1, step_done);
    break;
  }
  case S_SYNC:
    rc = uv_fs_fsync(loop, &x->fs, x->fd, step_done);
    break;
  case S_CLOSE:
    rc = uv_fs_close(loop, &x->fs, x->fd, step_done);
    x->fd = -1; /* closed whatever the result */
    break;
  case S_RENAME:
    rc = uv_fs_rename(loop, &x->fs, x->tmp, x->target, step_done);
    break;
  }
  if (rc < 0) fail_uv(x, rc, x->path);
}

/* Checks the resolved path real (of the file, or of its parent when
 * parent) against the sandbox and sets x->target; returns 0, or -1 after
 * failing x. */
static int place(file_req_t *x, const char *real, int parent) {
  char *t = parent ? nb__strf("%s%s%s", real, strcmp(real, "/") ? "/" : "",
                              x->base)
                   : nb__strdup(real);
  char *why = x->r.a ? nb__allow_path(x->r.a, x->what, x->path, t) : NULL;
  if (why) {
    free(t);
    finish(x, NB_EINVAL, why);
    return -1;
  }
  free(x->target);
  x->target = t;
  return 0;
}

/* One fs step of x ended: the next one, or the event. */
static void step_done(uv_fs_t *fs) {
  file_req_t *x = fs->data;
  ssize_t res = fs->result;
  char *real = NULL;
  if ((x->step == S_REAL || x->step == S_REAL_PARENT) && res >= 0)
    real = nb__strdup(fs->ptr);
  uv_stat_t st = fs->statbuf;
  uv_fs_req_cleanup(fs);
  if (x->cancelled) {
    if (x->step == S_OPEN && res >= 0) x->fd = (uv_file)res;
    free(real);
    req_free(x);
    return;
  }
  switch (x->step) {
  case S_REAL: /* a read in the sandbox: the whole path */
    if (res < 0) {
      /* Missing or unreadable: refused all the same when outside (the
       * parent tells), else this error is reported. */
      x->err = (int)res;
      go(x, S_REAL_PARENT);
      break;
    }
    if (place(x, real, 0) == 0) go(x, S_OPEN);
    break;
  case S_REAL_PARENT:
    if (res < 0) {
      fail_uv(x, (int)res, x->path);
    } else if (place(x, real, 1) == 0) {
      if (x->writing) go(x, S_OPEN);
      else fail_uv(x, x->err, x->path);
    }
    break;
  case S_OPEN:
    if (res < 0) {
      if (x->writing) { /* never created: nothing to remove */
        free(x->tmp);
        x->tmp = NULL;
      } else if (res == UV_ELOOP) {
        res = UV_EACCES; /* O_NOFOLLOW met a symlink swapped in */
      }
      fail_uv(x, (int)res, x->path);
      break;
    }
    x->fd = (uv_file)res;
    go(x, x->writing ? (x->len ? S_WRITE : S_SYNC) : S_STAT);
    break;
  case S_STAT:
    if (res < 0) {
      fail_uv(x, (int)res, x->path);
    } else if (S_ISDIR(st.st_mode)) {
      finish(x, NB_EINVAL, nb__strf("%s: %s: is a directory", x->what, x->path));
    } else if (st.st_size > NB_FILES_MAX) {
      finish(x, NB_ETOOBIG,
             nb__strf("%s: %s: %llu bytes, more than the %u nb.files reads",
                      x->what, x->path, (unsigned long long)st.st_size,
                      NB_FILES_MAX));
    } else {
      x->cap = (size_t)st.st_size + 1; /* one more: EOF at once */
      if (x->cap < 4096) x->cap = 4096;
      x->data = malloc(x->cap);
      if (!x->data) abort();
      go(x, S_READ);
    }
    break;
  case S_READ:
    if (res < 0) {
      fail_uv(x, (int)res, x->path);
    } else if (res == 0) {
      go(x, S_CLOSE);
    } else {
      x->n += (size_t)res;
      if (x->n > NB_FILES_MAX)
        finish(x, NB_ETOOBIG, nb__strf("%s: %s: more than the %u bytes "
                                       "nb.files reads", x->what, x->path,
                                       NB_FILES_MAX));
      else
        go(x, S_READ);
    }
    break;
  case S_WRITE:
    if (res < 0) {
      fail_uv(x, (int)res, x->path);
    } else {
      x->n += (size_t)res;
      go(x, x->n < x->len ? S_WRITE : S_SYNC);
    }
    break;
  case S_SYNC:
    if (res < 0) fail_uv(x, (int)res, x->path);
    else go(x, S_CLOSE);
    break;
  case S_CLOSE:
    if (res < 0) fail_uv(x, (int)res, x->path);
    else if (x->writing) go(x, S_RENAME);
    else finish(x, 0, NULL);
    break;
  case S_RENAME:
    if (res < 0) {
      fail_uv(x, (int)res, x->path);
    } else {
      free(x->tmp); /* renamed: nothing to remove */
      x->tmp = NULL;
      finish(x, 0, NULL);
    }
    break;
  }
  free(real);
}

/* Cancel: marks x; the step in flight frees it (uv_cancel makes a step
 * not started yet end at once with UV_ECANCELED). */
static void file_cancel(nb__req_t *r) {
  file_req_t *x = (file_req_t *)r;
  x->cancelled = 1;
  uv_cancel((uv_req_t *)&x->fs);
}

/* Returns a new file request of the cell's agent for path, or NULL with
 * *rc set. */
static file_req_t *file_new(nb_rt_cell_t *cell, const char *what,
                            const char *path, int writing, int64_t *rc) {
  nb__agent_t *a = (nb__agent_t *)cell;
  if (!path || !*path) {
    *rc = NB_EINVAL;
    return NULL;
  }
  file_req_t *x = (file_req_t *)nb__req_new(a, sizeof *x, file_cancel);
  if (!x) {
    *rc = a->rt->stopped ? NB_ECLOSED : NB_ENOMEM;
    return NULL;
  }
  x->fs.data = x;
  x->what = what;
  x->writing = writing;
  x->fd = -1;
  x->sandboxed = a->allow != NULL;
  x->path = nb__strdup(path);
  x->target = nb__strdup(path);
  return x;
}

int64_t nb_rt_file_read(nb_rt_cell_t *cell, const char *path) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  int64_t rc;
  file_req_t *x = file_new(cell, "nb.files.read", path, 0, &rc);
  if (!x) return rc;
  int64_t id = x->r.id;
  const char *slash = strrchr(path, '/');
  x->base = nb__strdup(slash ? slash + 1 : path);
  go(x, x->sandboxed ? S_REAL : S_OPEN);
  return id;
}

int64_t nb_rt_file_write(nb_rt_cell_t *cell, const char *path,
                         const char *data, size_t len) {
  NB__SVC_SCOPE(((nb__agent_t *)cell)->rt);
  int64_t rc;
  file_req_t *x = file_new(cell, "nb.files.write", path, 1, &rc);
  if (!x) return rc;
  int64_t id = x->r.id;
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
    finish(x, NB_EINVAL, nb__strf("nb.files.write: %s: not a file name", path));
    return id;
  }
  if (len > NB_FILES_MAX) {
    finish(x, NB_ETOOBIG, nb__strf("nb.files.write: %s: %zu bytes, more than "
                                   "the %u nb.files writes", path, len,
                                   NB_FILES_MAX));
    return id;
  }
  x->base = nb__strdup(base);
  x->len = len;
  x->data = malloc(len ? len : 1);
  if (!x->data) abort();
  if (len) memcpy(x->data, data, len);
  go(x, x->sandboxed ? S_REAL_PARENT : S_OPEN);
  return id;
}
