/* What the addon's C files share (native/btrfs-ts-native.c is the module, with the CRC32C engine). */
#ifndef BTRFS_TS_NATIVE_H
#define BTRFS_TS_NATIVE_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Little-endian fields of a stream command or a tree block, read where they lie. */
static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le64(const uint8_t *p) {
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* pread(2) until `n` bytes or the end of the file (EINTR retried): the bytes read, -1 on an error (btrfs-ts-native.c). */
ssize_t btrfs_ts_pread_full(int fd, uint8_t *p, size_t n, int64_t at);

/* The raw CRC32C register `crc` carried over p[0, n) on three lanes of the crc32 instruction (x86-64, SSE4.2 only). */
uint32_t btrfs_ts_crc32c_raw(uint32_t crc, const uint8_t *p, size_t n);

/* Whether the 4096 bytes at `p` match their stored btrfs crc32c checksum `sum` (4 bytes, little-endian). */
static inline int btrfs_ts_sector_ok(const uint8_t *p, const uint8_t *sum) {
  return ~btrfs_ts_crc32c_raw(0xffffffffu, p, 4096) == le32(sum);
}

/* The bytes of a typed array of any element type (btrfs-ts-native.c): 0 if `v` is none. */
int typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);

/* The bytes of a Uint8Array (a view of a SharedArrayBuffer too): 0 if `v` is not one (btrfs-ts-native.c). */
int u8_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);

/* Sets exports[name] to a function calling `cb` (btrfs-ts-native.c). */
void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb);

/* Adds crcAhead (crc-ahead.c) to the module's exports; only where btrfs_ts_crc32c_raw works. */
void crc_ahead_export(napi_env env, napi_value exports);

/* Adds fillStart, fillWake, fillWait, fillStop (data-fill.c) to the module's exports; only where btrfs_ts_crc32c_raw works. */
void data_fill_export(napi_env env, napi_value exports);
/* Adds extentHead (extent-head.c) to the module's exports; only where btrfs_ts_crc32c_raw works. */
void extent_head_export(napi_env env, napi_value exports);
/* Adds treeBlockOk and leafMerge (leaf-scan.c) to the module's exports. */
void leaf_scan_export(napi_env env, napi_value exports);

#endif
