/* nb.http's transfers from C, so they run under ASan/UBSan too (make test
 * SAN=address): a request completes and frees everything, a stream closed
 * early, task:cancel(), a restart of the agent, the runtime's close with
 * transfers in flight, nb_rt_run's loop with transfers in flight, and
 * HTTPS verified with a cafile (a throwaway certificate the openssl CLI
 * makes: a missing openssl fails the test). The agent is
 * spec/fixtures/http/client.lua; each test starts the fake server
 * spec/fixtures/http/fake_server.py (python3) in its own process. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nb_rt_internal.h"
#include "nbtest.h"

static pid_t server_pid;
static int port;

/* Starts a fake server (HTTPS with cert and key, else HTTP); its pid goes
 * to *pid, and its port is returned (0: it did not start). */
static int fake_start(pid_t *pid, const char *cert, const char *key) {
  int fds[2], p = 0;
  NBT_CHECK(pipe(fds) == 0);
  *pid = fork();
  if (*pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    if (cert)
      execlp("python3", "python3", "spec/fixtures/http/fake_server.py", "--cert",
             cert, "--key", key, (char *)NULL);
    else
      execlp("python3", "python3", "spec/fixtures/http/fake_server.py", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  if (f && fscanf(f, "PORT %d", &p) != 1) p = 0;
  if (f) fclose(f);
  return p;
}

static void fake_stop(pid_t *pid) {
  if (*pid > 0) {
    kill(*pid, SIGTERM);
    waitpid(*pid, NULL, 0);
    *pid = 0;
  }
}

/* Starts the fake server; its port goes to port. */
static void server_start(void) {
  port = fake_start(&server_pid, NULL, NULL);
  NBT_CHECK(port > 0);
}

static void server_stop(void) { fake_stop(&server_pid); }

/* Opens the client agent alone (restart on error, 1 ms backoff). */
static nb_rt_t *open_client(void) {
  static const char topo[] =
      "return { name = 'http', tick = 'free', arena = { size = 4194304 },\n"
      "  neurons = { client = { script = 'spec/fixtures/http/client.lua',\n"
      "    refractory = 0, on_error = 'policy',\n"
      "    restart = { backoff = '1ms' } } } }\n";
  nb_rt_opts_t o = {.quiet = 1, .recorders = "test"};
  char *err = NULL;
  nb_rt_t *rt = nb_rt_open_topo(topo, strlen(topo), "=http", &o, &err);
  if (!rt) printf("    open failed: %s\n", err);
  nb_rt_free_string(err);
  return rt;
}

/* Sends the client a command: a Lua table literal, %d taking the port. */
static void cmd(nb_rt_t *rt, const char *fmt) {
  char buf[512];
  snprintf(buf, sizeof buf, fmt, port);
  NBT_EQ(nb_rt_inject(rt, (uint32_t)nb_rt_id(rt, "test"), 0, 0, 0, buf, strlen(buf)), 0);
}

/* Ticks until the client's state dump holds text (or secs pass);
 * returns 1 when it does. */
static int wait_for(nb_rt_t *rt, const char *text, double secs) {
  double end = nbt_now_s() + secs;
  while (nbt_now_s() < end) {
    nb_rt_tick(rt, 10);
    char *err = NULL;
    char *s = nb_rt_state_dump(rt, 0, &err);
    int found = s && strstr(s, text) != NULL;
    nb_rt_free_string(s);
    nb_rt_free_string(err);
    if (found) return 1;
    nbt_sleep_ms(1);
  }
  return 0;
}

/* Ticks until no request of rt is outstanding; returns 1 then. */
static int wait_idle(nb_rt_t *rt, double secs) {
  double end = nbt_now_s() + secs;
  while (nbt_now_s() < end) {
    nb_rt_tick(rt, 10);
    if (nb__async_live(rt) == 0) return 1;
    nbt_sleep_ms(1);
  }
  return 0;
}

static void a_request_completes(void) {
  nb_rt_t *rt = open_client();
  if (!rt) return;
  cmd(rt, "{ op = 'request', key = 'a', opts = { url = 'http://127.0.0.1:%d/echo', body = 'hi' } }");
  cmd(rt, "{ op = 'request', key = 'b', opts = { url = 'http://127.0.0.1:%d/big?bytes=3000000' } }");
  cmd(rt, "{ op = 'request', key = 'c', opts = { url = 'http://127.0.0.1:1/' } }");
  cmd(rt, "{ op = 'request', key = 'd', opts = { url = 'http://127.0.0.1:%d/slow?ms=3000', timeout = 0.1 } }");
  NBT_CHECK(wait_for(rt, "[\"a\"]={", 10));
  NBT_CHECK(wait_for(rt, "[\"body_len\"]=3000000", 10));
  NBT_CHECK(wait_for(rt, "[\"kind\"]=\"io\"", 10));
  NBT_CHECK(wait_for(rt, "[\"kind\"]=\"timeout\"", 10));
  NBT_CHECK(wait_idle(rt, 5));
  nb_rt_close(rt);
}

static void a_stream_closed_early(void) {
  nb_rt_t *rt = open_client();
  if (!rt) return;
  cmd(rt, "{ op = 'first', key = 'f', n = 2, opts = { url = 'http://127.0.0.1:%d/stream?n=100&ms=20' } }");
  cmd(rt, "{ op = 'events', key = 'e', opts = { url = 'http://127.0.0.1:%d/stream?n=5&ms=1' } }");
  NBT_CHECK(wait_for(rt, "[\"f\"]={", 10));
  NBT_CHECK(wait_for(rt, "\"[DONE]\"", 10));
  NBT_CHECK(wait_idle(rt, 5));
  nb_rt_close(rt);
}

static void task_cancel_frees_the_transfer(void) {
  nb_rt_t *rt = open_client();
  if (!rt) return;
  cmd(rt, "{ op = 'hold', key = 'x', opts = { url = 'http://127.0.0.1:%d/slow?ms=5000' } }");
  nb_rt_tick(rt, 20);
  NBT_EQ(nb__async_live(rt), 1);
  cmd(rt, "{ op = 'cancel', key = 'x' }");
  NBT_CHECK(wait_for(rt, "\"cancelled\"", 5));
  NBT_EQ(nb__async_live(rt), 0);
  nb_rt_close(rt);
}

static void a_restart_cancels(void) {
  nb_rt_t *rt = open_client();
  if (!rt) return;
  cmd(rt, "{ op = 'hold', key = 'x', opts = { url = 'http://127.0.0.1:%d/slow?ms=5000' } }");
  cmd(rt, "{ op = 'events', key = 'e', opts = { url = 'http://127.0.0.1:%d/stream?n=100&ms=20' } }");
  nb_rt_tick(rt, 50);
  nbt_sleep_ms(50);
  nb_rt_tick(rt, 50);
  NBT_EQ(nb__async_live(rt), 2);
  cmd(rt, "{ op = 'crash' }");
  NBT_CHECK(wait_idle(rt, 5));
  /* The fresh state works. */
  cmd(rt, "{ op = 'request', key = 'after', opts = { url = 'http://127.0.0.1:%d/echo' } }");
  NBT_CHECK(wait_for(rt, "[\"after\"]={", 10));
  nb_rt_close(rt);
}

static void close_with_transfers_in_flight(void) {
  nb_rt_t *rt = open_client();
  if (!rt) return;
  for (int i = 0; i < 20; i++) {
    cmd(rt, "{ op = 'hold', key = 'x', opts = { url = 'http://127.0.0.1:%d/slow?ms=5000' } }");
    cmd(rt, "{ op = 'events', key = 'e', opts = { url = 'http://127.0.0.1:%d/stream?n=100&ms=20' } }");
  }
  for (int i = 0; i < 10; i++) {
    nb_rt_tick(rt, 20);
    nbt_sleep_ms(5);
  }
  NBT_CHECK(nb__async_live(rt) > 0);
  nb_rt_close(rt); /* no stop first: close stops, cancels, frees */
}

static void the_loop_with_transfers_in_flight(void) {
  nb_rt_t *rt = open_client();
  if (!rt) return;
  for (int i = 0; i < 10; i++) {
    cmd(rt, "{ op = 'hold', key = 'x', opts = { url = 'http://127.0.0.1:%d/slow?ms=5000' } }");
    cmd(rt, "{ op = 'request', key = 'r', opts = { url = 'http://127.0.0.1:%d/slow?ms=10' } }");
  }
  FILE *out = fopen("/dev/null", "w");
  nb_rt_run_opts_t ro = {.for_ns = 400000000ull, .no_watch = 1, .out = out};
  NBT_EQ(nb_rt_run(rt, &ro), 0);
  fclose(out);
  NBT_EQ(nb__async_live(rt), 0);
  char *err = NULL;
  char *s = nb_rt_state_dump(rt, 0, &err);
  NBT_CHECK(s && strstr(s, "[\"r\"]={[\"body\"]=\"slow\""));
  nb_rt_free_string(s);
  nb_rt_free_string(err);
  nb_rt_close(rt);
}

/* HTTPS: a request and a stream verified with cafile, one refused without
 * it; everything freed (OpenSSL's side too, under ASan). */
static void https_verified_with_cafile(void) {
  char dir[] = "/tmp/nb-http-tls.XXXXXX";
  NBT_CHECK(mkdtemp(dir) != NULL);
  char sh[1024], cert[256], key[256], buf[1024];
  snprintf(cert, sizeof cert, "%s/ok.pem", dir);
  snprintf(key, sizeof key, "%s/ok.key", dir);
  snprintf(sh, sizeof sh,
           "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost "
           "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -days 1 "
           "-keyout %s -out %s >/dev/null 2>&1",
           key, cert);
  int made = system(sh) == 0;
  if (!made) printf("    openssl could not make the certificate (is Debian's openssl installed? make deps)\n");
  NBT_CHECK(made);
  pid_t tls_pid = 0;
  int tls_port = made ? fake_start(&tls_pid, cert, key) : 0;
  NBT_CHECK(tls_port > 0);
  nb_rt_t *rt = tls_port > 0 ? open_client() : NULL;
  if (rt) {
    int id = nb_rt_id(rt, "test");
    snprintf(buf, sizeof buf, "{ op = 'request', key = 'a', opts = { url = "
             "'https://127.0.0.1:%d/echo', body = 'hi', cafile = '%s' } }", tls_port, cert);
    NBT_EQ(nb_rt_inject(rt, (uint32_t)id, 0, 0, 0, buf, strlen(buf)), 0);
    snprintf(buf, sizeof buf, "{ op = 'events', key = 'e', opts = { url = "
             "'https://127.0.0.1:%d/stream?n=3&ms=1', cafile = '%s' } }", tls_port, cert);
    NBT_EQ(nb_rt_inject(rt, (uint32_t)id, 0, 0, 0, buf, strlen(buf)), 0);
    snprintf(buf, sizeof buf, "{ op = 'request', key = 'n', opts = { url = "
             "'https://127.0.0.1:%d/echo' } }", tls_port);
    NBT_EQ(nb_rt_inject(rt, (uint32_t)id, 0, 0, 0, buf, strlen(buf)), 0);
    NBT_CHECK(wait_for(rt, "\\\"body\\\": \\\"hi\\\"", 10));
    NBT_CHECK(wait_for(rt, "[3]=\"event 3\",[4]=\"[DONE]\"", 10));
    NBT_CHECK(wait_for(rt, "self-signed certificate", 10));
    NBT_CHECK(wait_idle(rt, 5));
    nb_rt_close(rt);
  }
  fake_stop(&tls_pid);
  snprintf(sh, sizeof sh, "rm -rf '%s'", dir);
  NBT_EQ(system(sh), 0);
}

static const nbt_test_t tests[] = {
    NBT_TEST(a_request_completes),
    NBT_TEST(a_stream_closed_early),
    NBT_TEST(task_cancel_frees_the_transfer),
    NBT_TEST(a_restart_cancels),
    NBT_TEST(close_with_transfers_in_flight),
    NBT_TEST(the_loop_with_transfers_in_flight),
    NBT_TEST(https_verified_with_cafile),
};

int main(int argc, char **argv) {
  setenv("NB_LUA_PATH", "lua", 1);
  nbt_hooks_t hooks = {server_start, server_stop};
  return NBT_MAIN(argc, argv, tests, &hooks);
}
