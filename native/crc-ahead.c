/*
 * crcAhead(fd, offset, maxLen): a thread of its own that checks the CRC32C of a send stream's commands in a
 * regular file ahead of the parser, so that the parser's thread can skip the pass over every byte of the
 * stream (a dump of a 195 MiB stream spent a third of its main thread there, bound by memory bandwidth).
 *
 * It reads the file with pread(2) into a buffer of its own (a dup of `fd`: the caller may close its own)
 * from `offset`, the first command header after the first stream header, and frames commands as the parser
 * does: a 10-byte header (le32 len, le16 cmd, le32 crc), the payload, the CRC of both with the crc field
 * zeroed; after an END command, a new stream header if one follows. It publishes in a 16-byte buffer it
 * shares with JavaScript: word 0, the number of commands from `offset` whose CRC matched (release order:
 * a command counted is checked whole); word 1, 1 once the thread has stopped; word 2, set by JavaScript to
 * stop it. It stops at the first mismatch, at anything it cannot frame (a length over maxLen, a truncated
 * command, no stream header after an END) and at the end of the file: the parser checks those commands
 * itself and reports what it finds in its own words. The thread never decides anything but "this command's
 * CRC matched"; the parser, counting its commands from the same offset, skips only those.
 *
 * The shared words outlive whichever side lets go last (a count of two references): JavaScript's buffer
 * may be collected while the thread runs, and the thread may end long before the buffer is.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "btrfs-ts-native.h"

#define AHEAD_BUF (1 << 20)
#define CMD_HEADER 10
#define STREAM_HEADER 17
#define CMD_END 21

struct ahead {
  int32_t words[4]; /* first: the ArrayBuffer JavaScript sees is these 16 bytes */
  int refs;
  int fd;
  int64_t offset;
  uint32_t max_len;
};

static void ahead_unref(struct ahead *a) {
  if (__atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0) free(a);
}

/* The thread's view of the file: buf[pos, have) holds its bytes from offset `at` + pos. */
struct window {
  uint8_t *buf;
  size_t pos, have;
  int64_t at;
  int fd;
};

/* Where fewer than `n` bytes are left, moves them to the front and reads after them; the bytes there then (fewer at the end of the file or on an error). */
static size_t top_up(struct window *w, size_t n) {
  if (w->have - w->pos < n) {
    memmove(w->buf, w->buf + w->pos, w->have - w->pos);
    w->at += (int64_t)w->pos;
    w->have -= w->pos;
    w->pos = 0;
    ssize_t r = btrfs_ts_pread_full(w->fd, w->buf + w->have, AHEAD_BUF - w->have, w->at + (int64_t)w->have);
    if (r > 0) w->have += (size_t)r;
  }
  return w->have - w->pos;
}

static void *ahead_run(void *arg) {
  struct ahead *a = arg;
  struct window w = { malloc(AHEAD_BUF), 0, 0, a->offset, a->fd };
  uint8_t *buf = w.buf;
  int32_t count = 0;
  while (buf != NULL && !__atomic_load_n(&a->words[2], __ATOMIC_RELAXED)) {
    if (top_up(&w, CMD_HEADER) < CMD_HEADER) break;
    const uint8_t *h = buf + w.pos;
    uint32_t len = le32(h), crc = le32(h + 6);
    uint16_t cmd = (uint16_t)(h[4] | h[5] << 8);
    if (len > a->max_len) break;
    uint8_t zeroed[CMD_HEADER];
    memcpy(zeroed, h, 6);
    memset(zeroed + 6, 0, 4);
    uint32_t c = btrfs_ts_crc32c_raw(0, zeroed, CMD_HEADER);
    w.pos += CMD_HEADER;
    /* the payload, through as many refills as it takes */
    uint32_t left = len;
    while (left > 0) {
      size_t avail = top_up(&w, 1);
      if (avail == 0) break;
      size_t n = avail < left ? avail : left;
      c = btrfs_ts_crc32c_raw(c, buf + w.pos, n);
      w.pos += n;
      left -= (uint32_t)n;
    }
    if (left > 0 || c != crc) break;
    __atomic_store_n(&a->words[0], ++count, __ATOMIC_RELEASE);
    /* after END another stream may follow: its header, else nothing more to check */
    if (cmd == CMD_END) {
      if (top_up(&w, STREAM_HEADER) < STREAM_HEADER || memcmp(buf + w.pos, "btrfs-stream\0", 13) != 0) break;
      w.pos += STREAM_HEADER;
    }
  }
  free(buf);
  close(a->fd);
  __atomic_store_n(&a->words[1], 1, __ATOMIC_RELEASE);
  ahead_unref(a);
  return NULL;
}

static void ahead_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct ahead *a = data;
  __atomic_store_n(&a->words[2], 1, __ATOMIC_RELAXED); /* nobody reads the count any more */
  ahead_unref(a);
}

/* crcAhead(fd, offset, maxLen): the 16-byte ArrayBuffer of words (above), or undefined where no thread could start. */
static napi_value js_crc_ahead(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], ab, undef;
  int32_t fd;
  int64_t offset;
  uint32_t max_len;
  napi_get_undefined(env, &undef);
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok
      || napi_get_value_uint32(env, argv[2], &max_len) != napi_ok || offset < 0) {
    napi_throw_type_error(env, NULL, "crcAhead(fd, offset >= 0, maxLen)");
    return NULL;
  }
  struct ahead *a = calloc(1, sizeof *a);
  if (a == NULL) return undef;
  a->fd = dup(fd);
  a->offset = offset;
  a->max_len = max_len;
  a->refs = 2;
  if (a->fd < 0) {
    free(a);
    return undef;
  }
  if (napi_create_external_arraybuffer(env, a, sizeof a->words, ahead_finalize, NULL, &ab) != napi_ok) {
    close(a->fd);
    free(a);
    return undef;
  }
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, ahead_run, a) != 0) {
    /* no thread: it has stopped before it began (the finalizer still owns one reference) */
    close(a->fd);
    a->words[1] = 1;
    ahead_unref(a);
  }
  pthread_attr_destroy(&attr);
  return ab;
}

void crc_ahead_export(napi_env env, napi_value exports) {
  export_fn(env, exports, "crcAhead", js_crc_ahead);
}
