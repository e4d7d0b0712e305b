/* msgpack_scan.c - the allocation-free framing scan (see msgpack_scan.h).
 *
 * The zone bound mirrors msgpack-c's unpacker (checked for 4.0): an array of
 * n takes n msgpack_objects, a map of n takes n msgpack_object_kvs, each
 * plus alignment; str, bin and ext payloads point into the input. */
#include <msgpack.h>
#include <stdint.h>

#include "util/msgpack_scan.h"

/* Find the end of the object at b[0, len) and the zone bytes its containers
 * will take.  Every object is at least one byte, so more pending objects
 * than remaining bytes means the object is cut off; that also keeps the
 * counters below len, so they cannot overflow. */
slr_msgpack_scan_result slr_msgpack_scan(const unsigned char *b, size_t len, size_t *size,
                                         size_t *zone_need)
{
    size_t pos = 0, need = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        if (pending > len - pos)
            return SLR_MSGPACK_INCOMPLETE;
        unsigned c = b[pos++];
        pending--;
        if (c <= 0x7f || c >= 0xe0)
            continue; /* fixint */
        int len_bytes = 0;     /* big-endian length or count that follows */
        uint64_t skip = 0;     /* payload bytes after that */
        int container = 0;     /* 1 array, 2 map */
        uint64_t count = 0;
        if (c <= 0x8f) {
            container = 2, count = c & 0x0f;
        } else if (c <= 0x9f) {
            container = 1, count = c & 0x0f;
        } else if (c <= 0xbf) {
            skip = c & 0x1f; /* fixstr */
        } else {
            switch (c) {
            case 0xc0: case 0xc2: case 0xc3: break;            /* nil, false, true */
            case 0xc1: return SLR_MSGPACK_INVALID;                     /* never used */
            case 0xc4: case 0xd9: len_bytes = 1; break;         /* bin8, str8 */
            case 0xc5: case 0xda: len_bytes = 2; break;
            case 0xc6: case 0xdb: len_bytes = 4; break;
            case 0xc7: len_bytes = 1, skip = 1; break;          /* ext: + type byte */
            case 0xc8: len_bytes = 2, skip = 1; break;
            case 0xc9: len_bytes = 4, skip = 1; break;
            case 0xca: skip = 4; break;                         /* float32 */
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;              /* (u)int8 */
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                         /* fixext */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: container = 1, len_bytes = 2; break;
            case 0xdd: container = 1, len_bytes = 4; break;
            case 0xde: container = 2, len_bytes = 2; break;
            case 0xdf: container = 2, len_bytes = 4; break;
            }
        }
        if (len_bytes) {
            if ((size_t)len_bytes > len - pos)
                return SLR_MSGPACK_INCOMPLETE;
            uint64_t v = be_read(b + pos, len_bytes);
            pos += (size_t)len_bytes;
            if (container)
                count = v;
            else
                skip += v;
        }
        if (skip > len - pos)
            return SLR_MSGPACK_INCOMPLETE;
        pos += (size_t)skip;
        if (container == 1) {
            pending += count;
            need += (size_t)count * sizeof(msgpack_object) + sizeof(void *);
        } else if (container == 2) {
            pending += 2 * count;
            need += (size_t)count * sizeof(msgpack_object_kv) + sizeof(void *);
        }
    }
    *size = pos;
    *zone_need = need;
    return SLR_MSGPACK_COMPLETE;
}
