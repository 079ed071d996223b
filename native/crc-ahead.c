/*
 * crcAhead(fd, offset, maxLen, version, sectors): a thread of its own that checks the CRC32C of a send
 * stream's commands in a regular file ahead of the parser, so that the parser's thread can skip its pass
 * over every byte of the stream (bound by memory bandwidth: a third of a dump's main thread, a tenth of a
 * compressed receive's).
 *
 * It reads the file with pread(2) into a buffer of its own (a dup of `fd`: the caller may close its own)
 * from `offset`, the first command header after the first stream header, and frames commands as the parser
 * does: a 10-byte header (le32 len, le16 cmd, le32 crc), the payload, the CRC of both with the crc field
 * zeroed; after an END command, a new stream header if one follows. It stops at the first mismatch, at
 * anything it cannot frame (a length over maxLen, a truncated command, no stream header after an END) and at
 * the end of the file: the parser checks those commands itself and reports what it finds in its own words.
 *
 * With `sectors`, for a receive: for each WRITE and ENCODED_WRITE whose DATA (found as the parser finds it,
 * protocol `version`'s attribute layout) holds whole 4 KiB sectors, it also leaves the raw CRC32C of each
 * (what the receive makes the extent's checksums of) in a ring of records, waiting while the ring is full.
 * The parser takes a record only for the command it names and only if its DATA is where the parser finds it.
 *
 * Shared with JavaScript (struct shared, little-endian words): the number of commands from `offset` whose
 * CRC matched (a command is counted after its record, if any, is complete), 1 once the thread has stopped,
 * JavaScript's request to stop, records made, records taken by JavaScript; then the records (command index,
 * DATA's offset in the payload, DATA's length, sector count) and their sector CRCs. It outlives whichever
 * side lets go last (a count of two references).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "btrfs-ts-native.h"

#define AHEAD_BUF (1 << 20)
#define CMD_HEADER 10
#define STREAM_HEADER 17
#define CMD_WRITE 15
#define CMD_END 21
#define CMD_ENCODED_WRITE 25
#define ATTR_DATA 19
#define ATTR_MAX 35
#define SECTOR 4096
/* Records in the ring, and sector CRCs per record: a command with more sectors gets no record. */
#define NREC 512
#define SLOT 64

enum { W_COUNT, W_STOPPED, W_STOP, W_MADE, W_TAKEN };

struct shared {
  int32_t words[8];
  int32_t rec[NREC][4];
  uint32_t crcs[NREC][SLOT];
};

struct ahead {
  struct shared s; /* first: the ArrayBuffer JavaScript sees is these bytes */
  int refs;
  int fd;
  int sectors;
  uint32_t version;
  uint32_t max_len;
  /* buf[pos, have) holds the file's bytes from file offset `at` + pos */
  uint8_t *buf;
  size_t cap, pos, have;
  int64_t at;
};

static void ahead_unref(struct ahead *a) {
  if (__atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0) free(a);
}

static int stopping(struct ahead *a) {
  return __atomic_load_n(&a->s.words[W_STOP], __ATOMIC_ACQUIRE);
}

/* Makes buf[pos, pos + n) hold the file's next n bytes (growing the buffer for a long command); 0 at the end. */
static int ensure(struct ahead *a, size_t n) {
  if (a->have - a->pos >= n) return 1;
  memmove(a->buf, a->buf + a->pos, a->have - a->pos);
  a->at += (int64_t)a->pos;
  a->have -= a->pos;
  a->pos = 0;
  if (n > a->cap) {
    uint8_t *b = realloc(a->buf, n);
    if (b == NULL) return 0;
    a->buf = b;
    a->cap = n;
  }
  while (a->have < n) {
    ssize_t r = pread(a->fd, a->buf + a->have, a->cap - a->have, (off_t)(a->at + (int64_t)a->have));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    a->have += (size_t)r;
  }
  return 1;
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Where DATA is in the payload (the last one, as the parser keeps), -1 if absent or the attributes do not parse. */
static int64_t find_data(const uint8_t *p, uint32_t len, uint32_t version, uint32_t *dlen) {
  uint32_t pos = 0;
  int64_t found = -1;
  while (pos < len) {
    if (len - pos < 2) return -1;
    uint32_t type = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8;
    if (type == 0 || type > ATTR_MAX) return -1;
    pos += 2;
    uint32_t alen;
    if (version >= 2 && type == ATTR_DATA) {
      alen = len - pos;
    } else {
      if (len - pos < 2) return -1;
      alen = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8;
      pos += 2;
      if (len - pos < alen) return -1;
    }
    if (type == ATTR_DATA) {
      found = pos;
      *dlen = alen;
    }
    pos += alen;
  }
  return found;
}

/* Waits (checking for a stop) until the ring has room for one more record; 0 if asked to stop. */
static int room(struct ahead *a) {
  while (__atomic_load_n(&a->s.words[W_MADE], __ATOMIC_RELAXED) - __atomic_load_n(&a->s.words[W_TAKEN], __ATOMIC_ACQUIRE) >= NREC) {
    if (stopping(a)) return 0;
    struct timespec ts = { 0, 50000 };
    nanosleep(&ts, NULL);
  }
  return 1;
}

static void *ahead_run(void *arg) {
  struct ahead *a = arg;
  int32_t count = 0;
  a->cap = AHEAD_BUF;
  a->buf = malloc(a->cap);
  while (a->buf != NULL && !stopping(a)) {
    if (!ensure(a, CMD_HEADER)) break;
    const uint8_t *h = a->buf + a->pos;
    uint32_t len = le32(h), crc = le32(h + 6);
    uint16_t cmd = (uint16_t)(h[4] | h[5] << 8);
    if (len > a->max_len || !ensure(a, CMD_HEADER + (size_t)len)) break;
    h = a->buf + a->pos;
    const uint8_t *payload = h + CMD_HEADER;
    uint8_t zeroed[CMD_HEADER];
    memcpy(zeroed, h, 6);
    memset(zeroed + 6, 0, 4);
    uint32_t c = btrfs_ts_crc32c_raw(btrfs_ts_crc32c_raw(0, zeroed, CMD_HEADER), payload, len);
    if (c != crc) break;
    if (a->sectors && (cmd == CMD_WRITE || cmd == CMD_ENCODED_WRITE) && len >= SECTOR) {
      uint32_t dlen = 0;
      int64_t doff = find_data(payload, len, a->version, &dlen);
      uint32_t n = dlen / SECTOR;
      if (doff >= 0 && n >= 1 && n <= SLOT) {
        if (!room(a)) break;
        int32_t made = a->s.words[W_MADE];
        int32_t *r = a->s.rec[made % NREC];
        uint32_t *out = a->s.crcs[made % NREC];
        for (uint32_t i = 0; i < n; i++) out[i] = btrfs_ts_crc32c_raw(0, payload + doff + (size_t)i * SECTOR, SECTOR);
        r[0] = count;
        r[1] = (int32_t)doff;
        r[2] = (int32_t)dlen;
        r[3] = (int32_t)n;
        __atomic_store_n(&a->s.words[W_MADE], made + 1, __ATOMIC_RELEASE);
      }
    }
    a->pos += CMD_HEADER + (size_t)len;
    __atomic_store_n(&a->s.words[W_COUNT], ++count, __ATOMIC_RELEASE);
    if (cmd == CMD_END) {
      /* another stream may follow: its header, else nothing more to check */
      if (!ensure(a, STREAM_HEADER) || memcmp(a->buf + a->pos, "btrfs-stream\0", 13) != 0) break;
      a->version = le32(a->buf + a->pos + 13);
      a->pos += STREAM_HEADER;
    }
  }
  free(a->buf);
  close(a->fd);
  __atomic_store_n(&a->s.words[W_STOPPED], 1, __ATOMIC_RELEASE);
  ahead_unref(a);
  return NULL;
}

static void ahead_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct ahead *a = data;
  __atomic_store_n(&a->s.words[W_STOP], 1, __ATOMIC_RELEASE); /* nobody reads the count any more */
  ahead_unref(a);
}

/* crcAhead(fd, offset, maxLen, version, sectors): the shared bytes (above), or undefined where no thread could start. */
static napi_value js_crc_ahead(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], ab, undef;
  int32_t fd;
  int64_t offset;
  uint32_t max_len, version;
  bool sectors;
  napi_get_undefined(env, &undef);
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok
      || napi_get_value_uint32(env, argv[2], &max_len) != napi_ok || napi_get_value_uint32(env, argv[3], &version) != napi_ok
      || napi_get_value_bool(env, argv[4], &sectors) != napi_ok || offset < 0) {
    napi_throw_type_error(env, NULL, "crcAhead(fd, offset >= 0, maxLen, version, sectors)");
    return NULL;
  }
  struct ahead *a = calloc(1, sizeof *a);
  if (a == NULL) return undef;
  a->fd = dup(fd);
  a->at = offset;
  a->max_len = max_len;
  a->version = version;
  a->sectors = sectors;
  a->refs = 2;
  if (a->fd < 0) {
    free(a);
    return undef;
  }
  if (napi_create_external_arraybuffer(env, a, sizeof a->s, ahead_finalize, NULL, &ab) != napi_ok) {
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
    a->s.words[W_STOPPED] = 1;
    ahead_unref(a);
  }
  pthread_attr_destroy(&attr);
  return ab;
}

void crc_ahead_export(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "crcAhead", NAPI_AUTO_LENGTH, js_crc_ahead, NULL, &fn);
  napi_set_named_property(env, exports, "crcAhead", fn);
}
