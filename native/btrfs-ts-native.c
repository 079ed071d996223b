/*
 * btrfs-ts's optional native addon (Node-API, plain C): what JavaScript and WebAssembly cannot do at the
 * speed of the CPU. Built at install by scripts/build-native.mjs with the system's C compiler; where that
 * fails, or the addon does not load or fails src/util/native-addon.ts's probes, the same work goes through
 * @node-rs/crc32 and our WebAssembly (CRC32C) and @bokuweb/zstd-wasm (zstd), as before.
 *
 * - crc32cRaw / crc32cPiecesRaw: CRC32C with the SSE4.2 crc32 instruction on three independent lanes at
 *   once. The instruction has a latency of three cycles and a throughput of one, so a single chain (what
 *   @node-rs/crc32 does, ~4-6 GB/s here) leaves two thirds of the unit idle; three lanes of LANE bytes
 *   are combined by carrying the first two through the bytes after them (a table per shift distance).
 *   crc32cPiecesRaw computes the CRC of every 4 KiB sector of a buffer in one call: a receive's and a
 *   send's per-sector checksums were one addon call each, and the call cost more than the CRC.
 * - zstdDecompress: one zstd frame into the caller's buffer through the system's libzstd, dlopen'd at the
 *   first call (building needs no zstd headers; a command that decodes no zstd never maps it; without
 *   libzstd.so.1 the call throws ZSTD_UNAVAILABLE and the caller keeps its WebAssembly decoder). One
 *   decoder context per thread (per Node-API environment: workers have their own).
 *
 * - mapFile / dropPages: a stream file read through a private mapping instead of read(2) (src/io/mapped-input.ts):
 *   the parser's views are the page cache's pages, with no copy into a buffer (read(2) was the largest
 *   single cost of a dump), and the pages behind the parser are given back as it goes.
 *
 * - crcAhead (crc-ahead.c): a thread checking a stream file's command CRCs ahead of the parser.
 *
 * - treeBlockOk / leafMerge (leaf-scan.c): a tree block's structure checks and two leaves' merge by key.
 *
 * - copyFileRange: copy_file_range(2), for the image writer thread to take an encoded extent's bytes
 *   straight from the stream file into the image (src/io/write-behind.ts) instead of from a copy in memory.
 *
 * Everything works on the register btrfs-ts calls "raw": seed as given, no inversion on entry or exit
 * (the send stream's CRC; standard CRC32C is ~raw(~0, data)).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "btrfs-ts-native.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_CRC32_INSN 1
#else
#define HAVE_CRC32_INSN 0
#endif

/* Bytes per lane: three lanes make 4080 bytes, so a 4 KiB sector is one round plus two 8-byte steps. */
#define LANE 1360

#if HAVE_CRC32_INSN
/* SHIFT1[j][b]: the register b << 8j carried through LANE zero bytes; SHIFT2 through 2 * LANE. */
static uint32_t SHIFT1[4][256], SHIFT2[4][256];

__attribute__((target("sse4.2"))) static uint32_t through_zeros(uint32_t c, size_t n) {
  uint64_t x = c;
  for (size_t i = 0; i < n / 8; i++) x = _mm_crc32_u64(x, 0);
  return (uint32_t)x;
}

/* The shift is linear in the register: one row per bit, then each byte value is the XOR of its bits' rows. */
static void build_shift(uint32_t t[4][256], size_t n) {
  uint32_t bit[32];
  for (int k = 0; k < 32; k++) bit[k] = through_zeros(1u << k, n);
  for (int j = 0; j < 4; j++) {
    t[j][0] = 0;
    for (int b = 1; b < 256; b++) t[j][b] = t[j][b & (b - 1)] ^ bit[8 * j + __builtin_ctz(b)];
  }
}

static inline uint32_t shift(uint32_t t[4][256], uint32_t c) {
  return t[0][c & 255] ^ t[1][(c >> 8) & 255] ^ t[2][(c >> 16) & 255] ^ t[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_raw(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t a = crc;
  while (n >= 3 * LANE) {
    uint64_t b = 0, c = 0;
    for (size_t i = 0; i < LANE; i += 8) {
      uint64_t x, y, z;
      memcpy(&x, p + i, 8);
      memcpy(&y, p + LANE + i, 8);
      memcpy(&z, p + 2 * LANE + i, 8);
      a = _mm_crc32_u64(a, x);
      b = _mm_crc32_u64(b, y);
      c = _mm_crc32_u64(c, z);
    }
    /* crc(s, A B C) = shift(crc(s, A), |B C|) ^ shift(crc(0, B), |C|) ^ crc(0, C) */
    a = shift(SHIFT2, (uint32_t)a) ^ shift(SHIFT1, (uint32_t)b) ^ (uint32_t)c;
    p += 3 * LANE;
    n -= 3 * LANE;
  }
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    a = _mm_crc32_u64(a, x);
  }
  uint32_t s = (uint32_t)a;
  while (n--) s = _mm_crc32_u8(s, *p++);
  return s;
}

uint32_t btrfs_ts_crc32c_raw(uint32_t crc, const uint8_t *p, size_t n) {
  return crc32c_raw(crc, p, n);
}
#endif

ssize_t btrfs_ts_pread_full(int fd, uint8_t *p, size_t n, int64_t at) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, p + got, n - got, (off_t)(at + (int64_t)got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

int u8_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  void *d;
  if (napi_get_typedarray_info(env, v, &type, len, &d, NULL, NULL) != napi_ok || type != napi_uint8_array) return 0;
  *data = d;
  return 1;
}

/* The bytes of any typed array (a view of a SharedArrayBuffer too): its first element and its length in bytes. */
int typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  size_t n, offset;
  void *d;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &n, &d, &ab, &offset) != napi_ok) return 0;
  size_t size = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: size = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: size = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: size = 8; break;
    default: break;
  }
  *data = d;
  *len = n * size;
  return 1;
}

static napi_value number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

#if HAVE_CRC32_INSN
/* crc32cRaw(bytes, crc = 0): the raw register `crc` carried over `bytes`. */
static napi_value js_crc32c_raw(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *d;
  size_t n;
  uint32_t crc = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !typed_bytes(env, argv[0], &d, &n) || (argc > 1 && napi_get_value_uint32(env, argv[1], &crc) != napi_ok)) {
    napi_throw_type_error(env, NULL, "crc32cRaw(bytes, crc)");
    return NULL;
  }
  return number(env, crc32c_raw(crc, d, n));
}

/* crc32cPiecesRaw(bytes, size, out: Uint32Array): out[i] = raw CRC (seed 0) of bytes[i*size, (i+1)*size), for the whole pieces out holds. */
static napi_value js_crc32c_pieces_raw(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *d, *o;
  size_t n, on;
  uint32_t size = 0;
  napi_typedarray_type type;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !typed_bytes(env, argv[0], &d, &n) || napi_get_value_uint32(env, argv[1], &size) != napi_ok || size == 0
      || napi_get_typedarray_info(env, argv[2], &type, &on, (void **)&o, NULL, NULL) != napi_ok || type != napi_uint32_array) {
    napi_throw_type_error(env, NULL, "crc32cPiecesRaw(bytes, size > 0, out: Uint32Array)");
    return NULL;
  }
  size_t k = n / size < on ? n / size : on;
  uint32_t *out = (uint32_t *)o;
  for (size_t i = 0; i < k; i++) out[i] = crc32c_raw(0, d + i * size, size);
  return NULL;
}
#endif

/* The few libzstd entry points used, by their stable ABI (zstd.h is not needed to build). */
static void *(*zstd_create_dctx)(void);
static size_t (*zstd_free_dctx)(void *dctx);
static size_t (*zstd_decompress_dctx)(void *dctx, void *dst, size_t cap, const void *src, size_t len);
static unsigned (*zstd_is_error)(size_t code);
static const char *(*zstd_error_name)(size_t code);

static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;
static void open_libzstd(void);

struct env_data {
  void *dctx;
};

/* A worker's environment ends: its decoder goes with it. */
static void free_env_data(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct env_data *ed = data;
  if (ed->dctx != NULL && zstd_free_dctx != NULL) zstd_free_dctx(ed->dctx);
  free(ed);
}

/*
 * zstdDecompress(frame, out): decodes exactly one frame into `out` (its length is the most it may produce)
 * and zero-fills the rest of `out` — libzstd may use the output's unused tail as scratch space. Returns
 * the decoded length; throws an Error with code "ZSTD" and libzstd's error name.
 */
static napi_value js_zstd_decompress(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *src, *dst;
  size_t sn, dn;
  struct env_data *ed = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || !typed_bytes(env, argv[0], &src, &sn) || !typed_bytes(env, argv[1], &dst, &dn)) {
    napi_throw_type_error(env, NULL, "zstdDecompress(frame, out)");
    return NULL;
  }
  pthread_once(&zstd_once, open_libzstd);
  if (zstd_decompress_dctx == NULL) {
    napi_throw_error(env, "ZSTD_UNAVAILABLE", "libzstd.so.1 could not be loaded");
    return NULL;
  }
  napi_get_instance_data(env, (void **)&ed);
  if (ed == NULL) {
    napi_throw_error(env, "ZSTD", "no decoder state");
    return NULL;
  }
  if (ed->dctx == NULL && (ed->dctx = zstd_create_dctx()) == NULL) {
    napi_throw_error(env, "ZSTD", "out of memory for a decoder");
    return NULL;
  }
  size_t r = zstd_decompress_dctx(ed->dctx, dst, dn, src, sn);
  if (zstd_is_error(r)) {
    napi_throw_error(env, "ZSTD", zstd_error_name(r));
    return NULL;
  }
  memset(dst + r, 0, dn - r);
  return number(env, (double)r);
}

static void open_libzstd(void) {
  void *h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return;
  void *c = dlsym(h, "ZSTD_createDCtx"), *d = dlsym(h, "ZSTD_decompressDCtx"), *e = dlsym(h, "ZSTD_isError"), *f = dlsym(h, "ZSTD_getErrorName"),
       *g = dlsym(h, "ZSTD_freeDCtx");
  if (!c || !d || !e || !f || !g) return;
  *(void **)&zstd_create_dctx = c;
  *(void **)&zstd_free_dctx = g;
  *(void **)&zstd_is_error = e;
  *(void **)&zstd_error_name = f;
  *(void **)&zstd_decompress_dctx = d;
}

static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/*
 * mapFile(fd, offset, length): bytes [offset, offset + length) of the open file `fd` (offset a multiple of
 * the page size) as an ArrayBuffer over a private mapping — readable and writable, a write changing only
 * this process's copy of its page, never the file — unmapped when the ArrayBuffer is collected.
 * Throws an Error with the errno's code (ENODEV, ENOMEM, ...) when the file cannot be mapped.
 */
static napi_value js_map_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], ab;
  int32_t fd;
  int64_t offset, length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok
      || napi_get_value_int64(env, argv[2], &length) != napi_ok || offset < 0 || length <= 0 || offset % sysconf(_SC_PAGESIZE) != 0) {
    napi_throw_type_error(env, NULL, "mapFile(fd, offset (page-aligned), length > 0)");
    return NULL;
  }
  void *p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)offset);
  if (p == MAP_FAILED) {
    char code[32];
    snprintf(code, sizeof code, "E%d", errno);
    napi_throw_error(env, errno == ENODEV ? "ENODEV" : errno == ENOMEM ? "ENOMEM" : errno == EACCES ? "EACCES" : code, strerror(errno));
    return NULL;
  }
  madvise(p, (size_t)length, MADV_SEQUENTIAL);
  if (napi_create_external_arraybuffer(env, p, (size_t)length, unmap, (void *)(uintptr_t)length, &ab) != napi_ok) {
    munmap(p, (size_t)length);
    napi_throw_error(env, "EXTERNAL", "an external ArrayBuffer cannot be made here");
    return NULL;
  }
  return ab;
}

/*
 * dropPages(view): the whole pages inside a view of a mapFile buffer are given back (MADV_DONTNEED): the
 * process's memory no longer holds them, and reading them again faults them in from the file.
 */
static napi_value js_drop_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint8_t *d;
  size_t n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !typed_bytes(env, argv[0], &d, &n)) {
    napi_throw_type_error(env, NULL, "dropPages(view)");
    return NULL;
  }
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), from = ((uintptr_t)d + page - 1) & ~(page - 1), to = ((uintptr_t)d + n) & ~(page - 1);
  if (to > from) madvise((void *)from, to - from, MADV_DONTNEED);
  return NULL;
}

/*
 * copyFileRange(fdIn, offIn, fdOut, offOut, length): copy_file_range(2) at the given offsets (neither
 * descriptor's file position moves): the bytes go from the one file's page cache to the other's inside
 * the kernel, without a pass through this process's memory. Returns the bytes copied (fewer than asked
 * at the input's end; the caller loops). Throws an Error with the errno's code (EXDEV, EINVAL, ENOSYS,
 * EOPNOTSUPP, ...): the caller then copies through a buffer.
 */
static napi_value js_copy_file_range(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t fd_in, fd_out;
  int64_t off_in, off_out, length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5 || napi_get_value_int32(env, argv[0], &fd_in) != napi_ok || napi_get_value_int64(env, argv[1], &off_in) != napi_ok
      || napi_get_value_int32(env, argv[2], &fd_out) != napi_ok || napi_get_value_int64(env, argv[3], &off_out) != napi_ok
      || napi_get_value_int64(env, argv[4], &length) != napi_ok || off_in < 0 || off_out < 0 || length < 0) {
    napi_throw_type_error(env, NULL, "copyFileRange(fdIn, offIn, fdOut, offOut, length)");
    return NULL;
  }
  loff_t in = (loff_t)off_in, out = (loff_t)off_out;
  ssize_t n;
  do n = copy_file_range(fd_in, &in, fd_out, &out, (size_t)length, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    char code[32];
    const char *name = errno == EXDEV ? "EXDEV" : errno == EINVAL ? "EINVAL" : errno == ENOSYS ? "ENOSYS" : errno == EOPNOTSUPP ? "EOPNOTSUPP"
      : errno == EBADF ? "EBADF" : errno == EIO ? "EIO" : errno == ENOSPC ? "ENOSPC" : NULL;
    if (name == NULL) snprintf(code, sizeof code, "E%d", errno);
    napi_throw_error(env, name != NULL ? name : code, strerror(errno));
    return NULL;
  }
  return number(env, (double)n);
}

void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
#if HAVE_CRC32_INSN
static int have_crc32_insn;
#endif

/* Per process, whichever thread loads the addon first (workers may load it at the same time); libzstd at the first decode. */
static void init_once(void) {
#if HAVE_CRC32_INSN
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    build_shift(SHIFT1, LANE);
    build_shift(SHIFT2, 2 * LANE);
    have_crc32_insn = 1;
  }
#endif
}

/* Loaded once per thread (main and each worker). */
NAPI_MODULE_INIT() {
  pthread_once(&once, init_once);
#if HAVE_CRC32_INSN
  if (have_crc32_insn) {
    export_fn(env, exports, "crc32cRaw", js_crc32c_raw);
    export_fn(env, exports, "crc32cPiecesRaw", js_crc32c_pieces_raw);
    crc_ahead_export(env, exports);
    data_fill_export(env, exports);
    extent_head_export(env, exports);
  }
#endif
  export_fn(env, exports, "mapFile", js_map_file);
  export_fn(env, exports, "dropPages", js_drop_pages);
  export_fn(env, exports, "copyFileRange", js_copy_file_range);
  leaf_scan_export(env, exports);
  {
    struct env_data *ed = calloc(1, sizeof *ed);
    if (ed != NULL && napi_set_instance_data(env, ed, free_env_data, NULL) == napi_ok) export_fn(env, exports, "zstdDecompress", js_zstd_decompress);
  }
  return exports;
}
