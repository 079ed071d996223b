/*
 * The data-fill thread of a full --compressed-data send (src/send/data-fill.ts) as a thread of the addon:
 * the same jobs, from the same ring in shared memory, as the JavaScript worker of data-fill-worker.ts, but
 * without a V8 isolate: a worker took 30-80 ms of CPU to start (node's bootstrap, more once the send has
 * changed a V8 flag) and was ready 60-140 ms after it was asked for, with the send's thread doing the jobs
 * meanwhile.
 *
 * fillStart(shared, arena, path, layout) opens `path` and starts the thread; `shared` is the ring (control
 * words, per-job ints, copy offsets, sector checksums, at the byte offsets `layout` gives), `arena` the
 * output memory the jobs read into. Per job: pread the bytes from each copy in turn into the arena until one
 * whose 4 KiB sectors all match their crc32c checksums (result FILLED), else LEFT (a read error too: the
 * send does the job again in line and reports what it finds in its own words). Past the end of the file
 * reads as zeros, as readFullAt does. A job may also be a write of a settled output buffer to the send's
 * output file (write_job): the thread, awake for the reads anyway, does the output's writes too, instead of
 * a libuv pool thread woken per 1 MiB buffer — woken on the send's CPU while the other was busy, those
 * preempted the send's thread for 250-400 ms of a ~0.9 s send (docs/performance.md, thirteenth session).
 *
 * Waking goes through futexes on the shared words, as V8's Atomics.wait does not (it keeps its own list of
 * waiters): the thread sleeps on TAIL, JavaScript wakes it with fillWake(handle), waits for DONE to move
 * with fillWait(handle, done, ms) — a blocking wait: the send only waits when the thread is on the last job
 * it needs — and stops it with fillStop(handle), which joins the thread (it finishes the job in hand) and
 * lets go of the shared memory it held referenced.
 */
#define _GNU_SOURCE
#include "btrfs-ts-native.h"
#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 4096

/* layout: the Int32Array data-fill.ts passes, in this order */
enum { L_RING, L_INTS, L_MAX_COPIES, L_MAX_SECTORS, L_INTS_AT, L_OFFS_AT, L_SUMS_AT, L_TAIL, L_DONE, L_SLEEPING, L_WAITING, L_STOP, L_POSTED, L_WORKING, L_FILLED, L_LEFT, L_COUNT };

struct fill {
  int32_t l[L_COUNT];
  uint8_t *shared;
  size_t shared_len;
  uint8_t *arena;
  size_t arena_len;
  int fd;
  pthread_t thread;
  napi_ref shared_ref, arena_ref;
};

static int32_t *word(struct fill *f, int i) {
  return (int32_t *)f->shared + f->l[i];
}

static void futex_wake(int32_t *w) {
  syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleeps while *w == v (at most `ts`, NULL: no limit); returns at once if it differs. */
static void futex_wait(int32_t *w, int32_t v, const struct timespec *ts) {
  syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, ts, NULL, 0);
}

/*
 * A write job (copies -1): arena[at, at + len) written to the descriptor offs[1] at offs[0] (pwrite, the
 * whole of it): FILLED, or LEFT on any failure — the send writes it again in line and reports what it finds
 * in node's words (io/file-sink.ts).
 */
static int32_t write_job(struct fill *f, int32_t len, int32_t at, const double *offs) {
  if (len <= 0 || at < 0 || (size_t)at + (size_t)len > f->arena_len || !(offs[0] >= 0) || !(offs[1] >= 0) || offs[1] > 0x7fffffff) return f->l[L_LEFT];
  int fd = (int)offs[1];
  for (int64_t done = 0; done < len;) {
    ssize_t n = pwrite(fd, f->arena + at + done, (size_t)(len - done), (off_t)((int64_t)offs[0] + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return f->l[L_LEFT];
    done += n;
  }
  return f->l[L_FILLED];
}

/* One job: FILLED or LEFT. */
static int32_t run_job(struct fill *f, int32_t e) {
  int32_t *ints = (int32_t *)(f->shared + f->l[L_INTS_AT]) + (size_t)e * f->l[L_INTS];
  const double *offs = (const double *)(f->shared + f->l[L_OFFS_AT]) + (size_t)e * f->l[L_MAX_COPIES];
  const uint8_t *sums = f->shared + f->l[L_SUMS_AT] + (size_t)e * f->l[L_MAX_SECTORS] * 4;
  int32_t n = ints[0], len = ints[1], at = ints[2];
  if (n == -1) return f->l[L_MAX_COPIES] >= 2 ? write_job(f, len, at, offs) : f->l[L_LEFT];
  /* never outside the arena, whatever the ring says */
  if (n < 0 || n > f->l[L_MAX_COPIES] || len <= 0 || len % SECTOR != 0 || len / SECTOR > f->l[L_MAX_SECTORS] || at < 0
      || (size_t)at + (size_t)len > f->arena_len) return f->l[L_LEFT];
  uint8_t *room = f->arena + at;
  for (int32_t k = 0; k < n; k++) {
    if (!(offs[k] >= 0)) return f->l[L_LEFT];
    ssize_t got = btrfs_ts_pread_full(f->fd, room, (size_t)len, (int64_t)offs[k]);
    if (got < 0) return f->l[L_LEFT];
    memset(room + got, 0, (size_t)len - (size_t)got);
    int ok = 1;
    for (int32_t s = 0; ok && s < len / SECTOR; s++) {
      ok = btrfs_ts_sector_ok(room + (size_t)s * SECTOR, sums + 4 * s);
    }
    if (ok) return f->l[L_FILLED];
  }
  return f->l[L_LEFT];
}

static void *fill_run(void *arg) {
  struct fill *f = arg;
  /* SCHED_BATCH: a batch thread woken does not preempt the running one. Woken by the send at a few jobs
     waiting, this one was put on the send's CPU whenever the other was busy and ran there first (950
     preemptions of the send's thread, ~300 ms of a 0.9 s send under load); now it runs when a CPU is free
     or at the next tick. Any thread may lower its own policy so; where it cannot, it runs as before. */
  struct sched_param sp = { 0 };
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
  int32_t *tail = word(f, L_TAIL), *done = word(f, L_DONE), *sleeping = word(f, L_SLEEPING), *waiting = word(f, L_WAITING), *stop = word(f, L_STOP);
  int32_t *states = (int32_t *)(f->shared + f->l[L_INTS_AT]);
  for (int32_t head = 0;;) {
    if (__atomic_load_n(stop, __ATOMIC_SEQ_CST)) break;
    if (head == __atomic_load_n(tail, __ATOMIC_SEQ_CST)) {
      __atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
      if (head == __atomic_load_n(tail, __ATOMIC_SEQ_CST) && !__atomic_load_n(stop, __ATOMIC_SEQ_CST)) futex_wait(tail, head, NULL);
      __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
      continue;
    }
    int32_t e = head % f->l[L_RING];
    int32_t *state = states + (size_t)e * f->l[L_INTS] + 3;
    int32_t posted = f->l[L_POSTED];
    /* the send may have taken the job (it does one when it would wait): then only count it */
    if (__atomic_compare_exchange_n(state, &posted, f->l[L_WORKING], 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
      __atomic_store_n(state, run_job(f, e), __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(done, ++head, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(waiting, __ATOMIC_SEQ_CST)) futex_wake(done);
  }
  return NULL;
}

static void fill_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct fill *f = data;
  /* not stopped (a send dropped without its close): the thread sleeps on, its memory with it */
  if (f->fd < 0) free(f);
}

/* fillStart(shared: Uint8Array, arena: Uint8Array, path, layout: Int32Array): a handle, or undefined where the thread cannot start (the file does not open, ...). */
static napi_value js_fill_start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], undef, handle;
  char path[4096];
  size_t path_len;
  napi_typedarray_type type;
  size_t ln;
  void *ld;
  napi_get_undefined(env, &undef);
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct fill *f = calloc(1, sizeof *f);
  if (f == NULL) return undef;
  if (argc < 4 || !u8_bytes(env, argv[0], &f->shared, &f->shared_len) || !u8_bytes(env, argv[1], &f->arena, &f->arena_len)
      || napi_get_value_string_utf8(env, argv[2], path, sizeof path, &path_len) != napi_ok || path_len >= sizeof path - 1
      || napi_get_typedarray_info(env, argv[3], &type, &ln, &ld, NULL, NULL) != napi_ok || type != napi_int32_array || ln != L_COUNT) {
    free(f);
    napi_throw_type_error(env, NULL, "fillStart(shared: Uint8Array, arena: Uint8Array, path, layout: Int32Array)");
    return NULL;
  }
  memcpy(f->l, ld, sizeof f->l);
  /* the words and tables must lie inside `shared` */
  size_t sums_end = (size_t)f->l[L_SUMS_AT] + (size_t)f->l[L_RING] * f->l[L_MAX_SECTORS] * 4;
  if (f->l[L_RING] <= 0 || f->l[L_INTS] < 4 || f->l[L_INTS_AT] < 0 || f->l[L_OFFS_AT] % 8 != 0 || sums_end > f->shared_len
      || (size_t)f->l[L_OFFS_AT] + (size_t)f->l[L_RING] * f->l[L_MAX_COPIES] * 8 > f->shared_len
      || (size_t)f->l[L_INTS_AT] + (size_t)f->l[L_RING] * f->l[L_INTS] * 4 > f->shared_len) {
    free(f);
    napi_throw_range_error(env, NULL, "fillStart: the layout does not fit the shared memory");
    return NULL;
  }
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    free(f);
    return undef;
  }
  /* the thread uses both buffers until fillStop: they stay referenced until then */
  napi_create_reference(env, argv[0], 1, &f->shared_ref);
  napi_create_reference(env, argv[1], 1, &f->arena_ref);
  int made = napi_create_external(env, f, fill_finalize, NULL, &handle) == napi_ok;
  if (!made || pthread_create(&f->thread, NULL, fill_run, f) != 0) {
    napi_delete_reference(env, f->shared_ref);
    napi_delete_reference(env, f->arena_ref);
    close(f->fd);
    /* once the handle exists, its finalizer frees `f` (it sees no thread: fd < 0) */
    f->fd = -1;
    if (!made) free(f);
    return undef;
  }
  return handle;
}

static struct fill *handle_of(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, NULL, NULL);
  if (*argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "not a fill thread's handle");
    return NULL;
  }
  return data;
}

/* fillWake(handle): wakes the thread if it sleeps on TAIL. */
static napi_value js_fill_wake(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  struct fill *f = handle_of(env, info, &argc, argv);
  if (f != NULL && f->fd >= 0) futex_wake(word(f, L_TAIL));
  return NULL;
}

/* fillWait(handle, done, ms): blocks while DONE is `done`, at most `ms` milliseconds. */
static napi_value js_fill_wait(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t done, ms;
  struct fill *f = handle_of(env, info, &argc, argv);
  if (f == NULL) return NULL;
  if (argc < 3 || napi_get_value_int32(env, argv[1], &done) != napi_ok || napi_get_value_int32(env, argv[2], &ms) != napi_ok || ms < 0) {
    napi_throw_type_error(env, NULL, "fillWait(handle, done, ms >= 0)");
    return NULL;
  }
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  if (f->fd >= 0) futex_wait(word(f, L_DONE), done, &ts);
  return NULL;
}

/* fillStop(handle): stops the thread after the job in hand, joins it, lets go of the shared memory. Once. */
static napi_value js_fill_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  struct fill *f = handle_of(env, info, &argc, argv);
  if (f == NULL || f->fd < 0) return NULL;
  /* STOP, then TAIL moved: a thread between its last look at STOP and its futex wait finds TAIL changed
     and does not sleep (a wake alone could come before the wait, and the join would never return) */
  __atomic_store_n(word(f, L_STOP), 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(word(f, L_TAIL), 1, __ATOMIC_SEQ_CST);
  futex_wake(word(f, L_TAIL));
  pthread_join(f->thread, NULL);
  close(f->fd);
  f->fd = -1;
  napi_delete_reference(env, f->shared_ref);
  napi_delete_reference(env, f->arena_ref);
  return NULL;
}

void data_fill_export(napi_env env, napi_value exports) {
  export_fn(env, exports, "fillStart", js_fill_start);
  export_fn(env, exports, "fillWake", js_fill_wake);
  export_fn(env, exports, "fillWait", js_fill_wait);
  export_fn(env, exports, "fillStop", js_fill_stop);
}
#else
/* futexes are Linux's: elsewhere the JavaScript worker does the jobs */
void data_fill_export(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
}
#endif
