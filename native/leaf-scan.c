/*
 * Tree block scans that JavaScript runs as cold code, item by item, in a short command: an incremental
 * send parses ~170 blocks and merges ~80 pairs of leaves once each, and every item of them cost a dozen
 * DataView calls there (docs/performance.md, twelfth session, incr16). Each function only says "all is
 * well" or where to look: the caller keeps its JavaScript for everything it reports (src/image/structs/
 * tree-block.ts, src/image/read/leaf-keys.ts).
 *
 * - treeBlockOk(block, nodesize, level, nritems): whether parseTreeBlock's structure checks pass — a
 *   leaf's item data back to back from the block's end down, above the item headers; keys in strictly
 *   increasing order (a leaf's items, a node's key pointers).
 * - leafMerge(a, i, na, b, j, nb, out): the items of two leaves merged by key from slots i and j until
 *   either leaf ends or `out` is full: out[0], out[1] = where each leaf stopped; out[2 + 2k], out[3 + 2k] =
 *   the k-th item that differs, as (slot in a, slot in b) with -1 for a side without it. Items with the same
 *   key and the same bytes are not listed. Returns k, or -1 for a slot or item outside its block (then the
 *   caller merges in JavaScript, which reports nothing either: parseTreeBlock has checked both leaves).
 */
#include <string.h>
#include "btrfs-ts-native.h"

#define HEADER_SIZE 101
#define ITEM_SIZE 25
#define KEY_PTR_SIZE 33

/* Two disk keys (objectid le64, type u8, offset le64) in key order: <0, 0, >0. */
static inline int key_cmp(const uint8_t *a, const uint8_t *b) {
  uint64_t x = le64(a), y = le64(b);
  if (x != y) return x < y ? -1 : 1;
  if (a[8] != b[8]) return a[8] < b[8] ? -1 : 1;
  x = le64(a + 9);
  y = le64(b + 9);
  return x == y ? 0 : x < y ? -1 : 1;
}

static napi_value int_value(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

static napi_value js_tree_block_ok(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], r;
  uint8_t *b;
  size_t len;
  int32_t nodesize, level, n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || !u8_bytes(env, argv[0], &b, &len) || napi_get_value_int32(env, argv[1], &nodesize) != napi_ok
      || napi_get_value_int32(env, argv[2], &level) != napi_ok || napi_get_value_int32(env, argv[3], &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "treeBlockOk(block, nodesize, level, nritems)");
    return NULL;
  }
  int ok = nodesize >= HEADER_SIZE && (size_t)nodesize <= len && n >= 0;
  size_t step = level == 0 ? ITEM_SIZE : KEY_PTR_SIZE;
  if (ok && (size_t)n > ((size_t)nodesize - HEADER_SIZE) / step) ok = 0;
  if (ok && level == 0) {
    /* item i's data ends where item i-1's begins (the first at the block's end), above the headers */
    uint64_t prev_end = (uint64_t)nodesize - HEADER_SIZE, headers = (uint64_t)ITEM_SIZE * (uint64_t)n;
    for (int32_t i = 0; ok && i < n; i++) {
      const uint8_t *p = b + HEADER_SIZE + (size_t)i * ITEM_SIZE;
      uint64_t offset = le32(p + 17), size = le32(p + 21);
      if (offset + size != prev_end || offset < headers) ok = 0;
      prev_end = offset;
    }
  }
  for (int32_t i = 1; ok && i < n; i++) {
    const uint8_t *p = b + HEADER_SIZE + (size_t)i * step;
    if (key_cmp(p - step, p) >= 0) ok = 0;
  }
  napi_get_boolean(env, ok, &r);
  return r;
}

static napi_value js_leaf_merge(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  uint8_t *a, *b;
  size_t alen, blen, outlen;
  int32_t i, na, j, nb;
  napi_typedarray_type t;
  void *outp;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 7 || !u8_bytes(env, argv[0], &a, &alen) || napi_get_value_int32(env, argv[1], &i) != napi_ok
      || napi_get_value_int32(env, argv[2], &na) != napi_ok || !u8_bytes(env, argv[3], &b, &blen)
      || napi_get_value_int32(env, argv[4], &j) != napi_ok || napi_get_value_int32(env, argv[5], &nb) != napi_ok
      || napi_get_typedarray_info(env, argv[6], &t, &outlen, &outp, NULL, NULL) != napi_ok || t != napi_int32_array || outlen < 4) {
    napi_throw_type_error(env, NULL, "leafMerge(a, i, na, b, j, nb, out)");
    return NULL;
  }
  int32_t *out = outp;
  if (i < 0 || j < 0 || na < i || nb < j || HEADER_SIZE + (uint64_t)na * ITEM_SIZE > alen || HEADER_SIZE + (uint64_t)nb * ITEM_SIZE > blen) {
    return int_value(env, -1);
  }
  size_t cap = (outlen - 2) / 2, n = 0;
  while (i < na && j < nb && n < cap) {
    const uint8_t *p = a + HEADER_SIZE + (size_t)i * ITEM_SIZE, *q = b + HEADER_SIZE + (size_t)j * ITEM_SIZE;
    int c = key_cmp(p, q);
    if (c < 0) {
      out[2 + 2 * n] = i++;
      out[3 + 2 * n++] = -1;
    } else if (c > 0) {
      out[2 + 2 * n] = -1;
      out[3 + 2 * n++] = j++;
    } else {
      uint64_t ao = le32(p + 17), as = le32(p + 21), bo = le32(q + 17), bs = le32(q + 21);
      if (HEADER_SIZE + ao + as > alen || HEADER_SIZE + bo + bs > blen) return int_value(env, -1);
      if (as != bs || memcmp(a + HEADER_SIZE + ao, b + HEADER_SIZE + bo, as) != 0) {
        out[2 + 2 * n] = i;
        out[3 + 2 * n++] = j;
      }
      i++;
      j++;
    }
  }
  out[0] = i;
  out[1] = j;
  return int_value(env, (int32_t)n);
}

void leaf_scan_export(napi_env env, napi_value exports) {
  export_fn(env, exports, "treeBlockOk", js_tree_block_ok);
  export_fn(env, exports, "leafMerge", js_leaf_merge);
}
