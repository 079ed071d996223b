/*
 * The first sector of a compressed extent, for a full --compressed-data send (src/send/extent-head.ts): the
 * send reads and checks it before the command is framed, while the rest is read behind it (data-fill.c),
 * and the planner walks its zstd frame headers (plan/rules.ts planEncodedWrite). In JavaScript that was a
 * readSync, a CRC32C call, and the frame walked twice (compress/zstd.ts: zstdHeadersWithin, then
 * zstdFrameInfo), ~60 ms of the send's thread for 7,366 extents; here it is one call.
 *
 * extentHead(fd, position, room, sum, len, zstd, out): pread 4096 bytes at `position` into room (zeros past
 * the end of the file), check their crc32c against the stored checksum `sum` (4 bytes, little-endian), and
 * with `zstd` walk the frame of an extent `len` bytes long as zstdFrameInfo does, through its block headers,
 * all of which must lie in the sector. Returns -1 (the read failed), 0 (the checksum does not match), 1 (good;
 * with `zstd`, out[0..7] = frameLen, headerLen, windowSize, contentSize (NaN: none), singleSegment,
 * hasChecksum, dictId, blockCount), or 2 (good, but the frame is anything else: not zstd's, a field this walk
 * leaves to zstdFrameInfo, a header past the sector — the caller walks it in JavaScript, whose verdict
 * and words stand).
 */
#include "btrfs-ts-native.h"
#include <math.h>
#include <string.h>

#define SECTOR 4096
#define ZSTD_MAGIC 0xfd2fb528u
#define BLOCK_SIZE_MAX (128 * 1024)

/* zstdFrameInfo(d[0, n)) where every header it reads lies in d[0, known): 1 and out[] filled, else 2. */
static int zstd_walk(const uint8_t *d, double n, double known, double *out) {
  static const int dict_sizes[4] = { 0, 1, 2, 4 }, fcs_sizes[4] = { 0, 2, 4, 8 };
  if (n < 6 || known < 18 || le32(d) != ZSTD_MAGIC) return 2;
  int fhd = d[4], fcs_flag = fhd >> 6, single = (fhd & 0x20) != 0, has_checksum = (fhd & 0x04) != 0;
  if (fhd & 0x08) return 2;
  int dict_size = dict_sizes[fhd & 3], fcs_size = fcs_flag == 0 ? single : fcs_sizes[fcs_flag];
  /* an 8-byte content size: JavaScript sums it in doubles, leave it to that */
  if (fcs_size == 8) return 2;
  int p = 5;
  double window = 0;
  if (!single) {
    int wd = d[p++];
    double base = (double)(1ull << (10 + (wd >> 3)));
    window = base + base / 8 * (wd & 7);
  }
  if (n < p + dict_size + fcs_size) return 2;
  double dict = 0, content = NAN;
  for (int i = 0; i < dict_size; i++) dict += d[p + i] * (double)(1u << (8 * i));
  p += dict_size;
  if (fcs_size > 0) {
    double v = 0;
    for (int i = 0; i < fcs_size; i++) v += d[p + i] * (double)(1u << (8 * i));
    content = fcs_size == 2 ? v + 256 : v;
    p += fcs_size;
  }
  if (single) window = content;
  int header = p;
  double block_max = window < BLOCK_SIZE_MAX ? window : BLOCK_SIZE_MAX;
  double at = p, blocks = 0;
  for (;;) {
    if (n - at < 3 || at + 3 > known) return 2;
    uint32_t bh = d[(int)at] | (uint32_t)d[(int)at + 1] << 8 | (uint32_t)d[(int)at + 2] << 16;
    int last = bh & 1, type = (bh >> 1) & 3;
    double size = bh >> 3, payload = type == 1 ? 1 : size;
    if (type == 3 || size > block_max || n - at - 3 < payload) return 2;
    at += 3 + payload;
    blocks++;
    if (last) break;
  }
  if (has_checksum) {
    if (n - at < 4) return 2;
    at += 4;
  }
  out[0] = at;
  out[1] = header;
  out[2] = window;
  out[3] = content;
  out[4] = single;
  out[5] = has_checksum;
  out[6] = dict;
  out[7] = blocks;
  return 1;
}

static napi_value js_extent_head(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  int32_t fd;
  double position, len;
  bool zstd;
  uint8_t *room, *sum;
  size_t room_len, sum_len, out_len;
  void *out;
  napi_typedarray_type type;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 7 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_double(env, argv[1], &position) != napi_ok
      || !typed_bytes(env, argv[2], &room, &room_len) || !typed_bytes(env, argv[3], &sum, &sum_len)
      || napi_get_value_double(env, argv[4], &len) != napi_ok || napi_get_value_bool(env, argv[5], &zstd) != napi_ok
      || napi_get_typedarray_info(env, argv[6], &type, &out_len, &out, NULL, NULL) != napi_ok || type != napi_float64_array
      || out_len < 8 || room_len < SECTOR || sum_len < 4 || !(position >= 0) || !(len >= SECTOR)) {
    napi_throw_type_error(env, NULL, "extentHead(fd, position >= 0, room (4096+ bytes), sum (4 bytes), len >= 4096, zstd, out: Float64Array(8))");
    return NULL;
  }
  int r;
  ssize_t got = btrfs_ts_pread_full(fd, room, SECTOR, (int64_t)position);
  if (got < 0) {
    r = -1;
  } else {
    memset(room + got, 0, SECTOR - (size_t)got);
    r = btrfs_ts_sector_ok(room, sum);
    if (r && zstd) r = zstd_walk(room, len, SECTOR, out);
  }
  napi_create_int32(env, r, &result);
  return result;
}

void extent_head_export(napi_env env, napi_value exports) {
  export_fn(env, exports, "extentHead", js_extent_head);
}
