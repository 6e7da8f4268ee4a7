/* records.py's twins: a record's and a put's encoding, their stamping, the index's put. */
#include "speedups.h"

#define BORNHOST_V6_FLAG 0x10
#define STOREHOST_V6_FLAG 0x20
#define MESSAGE_MAGIC_V1 (-626843481)

static const char *const record_kw[] = {
    "topic", "queue_id", "flag", "body", "properties", "sys_flag", "born_timestamp", "born_host",
    "store_timestamp", "store_host", "reconsume_times", "prepared_transaction_offset",
    "queue_offset", "physical_offset", "crc"};
enum { R_TOPIC, R_QUEUE_ID, R_FLAG, R_BODY, R_PROPS, R_SYS_FLAG, R_BORN_TS, R_BORN_HOST,
       R_STORE_TS, R_STORE_HOST, R_RECONSUME, R_PREPARED, R_QOFF, R_PHYS, R_CRC, R_COUNT };

long long
rec_size(Rec *r)
{
    if (r->topic_len > 127 || r->props_len > 32767 || (r->born_len != 8 && r->born_len != 20)
        || (r->store_len != 8 && r->store_len != 20))
        return -1;
    r->sys_flag &= ~(BORNHOST_V6_FLAG | STOREHOST_V6_FLAG);
    if (r->born_len == 20)
        r->sys_flag |= BORNHOST_V6_FLAG;
    if (r->store_len == 20)
        r->sys_flag |= STOREHOST_V6_FLAG;
    long long size = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + r->born_len + 8 + r->store_len + 4 + 8
                     + 4 + r->body_len + 1 + r->topic_len + 2 + r->props_len;
    return size > 2147483647LL ? -1 : size;
}

unsigned char *
rec_head(unsigned char *o, const Rec *r, long long size)
{
    wr32(o, (uint32_t)size); wr32(o + 4, (uint32_t)MESSAGE_MAGIC_V1); wr32(o + 8, (uint32_t)r->crc);
    wr32(o + 12, (uint32_t)r->queue_id); wr32(o + 16, (uint32_t)r->flag);
    wr64(o + 20, (uint64_t)r->qoff); wr64(o + 28, (uint64_t)r->phys);
    wr32(o + 36, (uint32_t)r->sys_flag); wr64(o + 40, (uint64_t)r->born_ts);
    o += 48;
    memcpy(o, r->born, r->born_len); o += r->born_len;
    wr64(o, (uint64_t)r->store_ts); o += 8;
    memcpy(o, r->store, r->store_len); o += r->store_len;
    wr32(o, (uint32_t)r->reconsume); wr64(o + 4, (uint64_t)r->prepared);
    wr32(o + 12, (uint32_t)r->body_len);
    o += 16;
    memcpy(o, r->body, r->body_len); o += r->body_len;
    *o++ = (unsigned char)r->topic_len;
    memcpy(o, r->topic, r->topic_len); o += r->topic_len;
    wr16(o, (uint16_t)r->props_len);
    return o + 2;
}

static void
rec_write(unsigned char *o, const Rec *r, long long size)
{
    memcpy(rec_head(o, r, size), r->props, r->props_len);
}

/* -- CRC-32 ------------------------------------------------------------------------------------
 * zlib's crc32 (the IEEE polynomial, bit-reflected), by table one byte at a time for short
 * bodies (and a CPU without clmul), else by carry-less multiplication 16 bytes at a time: the
 * body is folded 64 then 16 bytes at a time with clmul by x^n mod P, the last 128 bits reduced
 * to 64 and 32, then Barrett's reduction (Intel's "Fast CRC Computation for Generic Polynomials
 * Using PCLMULQDQ"). Several times zlib's speed on this CPU class: a 1 KiB body costs a tenth of
 * what it did. The constants are x^k mod P for the fold distances, P and floor(x^64 / P), all
 * bit-reflected. The table is no slower than calling zlib.crc32 through Python for the bodies
 * it serves, and needs no body object (a batch's bodies are read where they lie). */
static uint32_t crc_table[256];

/* The bytes' CRC continued from `crc` (not inverted), one byte at a time. */
static uint32_t
crc_bytes(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

static void
crc_table_fill(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_CLMUL_CRC 1
__attribute__((target("pclmul,sse4.1"))) static inline __m128i
fold16(__m128i x, __m128i k, __m128i next)
{
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
                                       _mm_clmulepi64_si128(x, k, 0x11)), next);
}

/* zlib.crc32(p[0:n)) for n >= 64. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t
crc32_clmul(const unsigned char *p, size_t n)
{
    const __m128i k12 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL);
    const __m128i k34 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x1f7011641LL, 0x1db710641LL);
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
    __m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128(-1));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    size_t tail = n % 16;
    p += 64;
    n -= 64 + tail;
    for (; n >= 64; p += 64, n -= 64) {
        x0 = fold16(x0, k12, _mm_loadu_si128((const __m128i *)p));
        x1 = fold16(x1, k12, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold16(x2, k12, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold16(x3, k12, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    x0 = fold16(fold16(fold16(x0, k34, x1), k34, x2), k34, x3);
    for (; n >= 16; p += 16, n -= 16)
        x0 = fold16(x0, k34, _mm_loadu_si128((const __m128i *)p));
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), _mm_clmulepi64_si128(k34, x0, 0x01));
    x0 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x0, mask32), k5, 0x00),
                       _mm_srli_si128(x0, 4));
    __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x0, mask32), poly, 0x10);
    t = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00), x0);
    return ~crc_bytes((uint32_t)_mm_extract_epi32(t, 1), p, tail);
}

/* Whether this CPU multiplies without carry (the table made on the first call). */
static int
clmul_ready(void)
{
    static int ready = -1;
    if (ready < 0) {
        __builtin_cpu_init();
        ready = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }
    return ready;
}
#endif

long long
crc_raw(const unsigned char *p, Py_ssize_t n)
{
    if (crc_table[1] == 0)
        crc_table_fill();
#ifdef HAVE_CLMUL_CRC
    if (n >= 64 && clmul_ready())
        return crc32_clmul(p, (size_t)n) & 0x7FFFFFFF;
#endif
    return ~crc_bytes(0xFFFFFFFFu, p, (size_t)n) & 0x7FFFFFFF;
}

/* encode_record for a v1-magic record (topic up to 127 bytes), hosts of 8 or 20 bytes. */
PyObject *
encode_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *v[R_COUNT] = {0};
    Rec r = {0};
    if (nargs != 0 || kwnames == NULL)
        goto refuse;
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        int j = 0;
        while (j < R_COUNT && PyUnicode_CompareWithASCIIString(k, record_kw[j]) != 0)
            j++;
        if (j == R_COUNT || v[j] != NULL)
            goto refuse;
        v[j] = args[i];
    }
    for (int j = 0; j < R_RECONSUME; j++)
        if (v[j] == NULL)
            goto refuse;
    if (!int_in(v[R_QUEUE_ID], I32, &r.queue_id) || !int_in(v[R_FLAG], I32, &r.flag)
        || !int_in(v[R_SYS_FLAG], I32, &r.sys_flag) || !int_in(v[R_BORN_TS], I64, &r.born_ts)
        || !int_in(v[R_STORE_TS], I64, &r.store_ts)
        || (v[R_RECONSUME] && !int_in(v[R_RECONSUME], I32, &r.reconsume))
        || (v[R_PREPARED] && !int_in(v[R_PREPARED], I64, &r.prepared))
        || (v[R_QOFF] && !int_in(v[R_QOFF], I64, &r.qoff))
        || (v[R_PHYS] && !int_in(v[R_PHYS], I64, &r.phys))
        || (v[R_CRC] && v[R_CRC] != Py_None && !int_in(v[R_CRC], I32, &r.crc)))
        goto refuse;
    PyObject *born = v[R_BORN_HOST], *store = v[R_STORE_HOST], *body = v[R_BODY];
    if (!PyBytes_CheckExact(born) || !PyBytes_CheckExact(store) || !PyBytes_CheckExact(body))
        goto refuse;
    r.born = PyBytes_AS_STRING(born); r.born_len = PyBytes_GET_SIZE(born);
    r.store = PyBytes_AS_STRING(store); r.store_len = PyBytes_GET_SIZE(store);
    r.body = PyBytes_AS_STRING(body); r.body_len = PyBytes_GET_SIZE(body);
    r.topic = utf8_of(v[R_TOPIC], &r.topic_len);
    r.props = utf8_of(v[R_PROPS], &r.props_len);
    long long size;
    if (r.topic == NULL || r.props == NULL || (size = rec_size(&r)) < 0)
        goto refuse;
    if (v[R_CRC] == NULL || v[R_CRC] == Py_None)
        r.crc = crc_raw((const unsigned char *)r.body, r.body_len);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL)
        return NULL;
    rec_write((unsigned char *)PyByteArray_AS_STRING(out), &r, size);
    return out;
refuse:
    return fallback(B_ENCODE_RECORD, args, nargs, kwnames);
}


/* A message of a put, read: its record's fields (pointing into `held`, by message_fields'
 * order; its properties dict only when they had no string) and size. */
typedef struct {
    Rec r;
    long long size;
    PyObject *held[M_COUNT];
} Put;

/* A message's fields into *p, its CRC computed: 1 done, 0 the original's to do (nothing
 * raised). */
static int
read_put(PyObject *m, PyObject *store, long long max_body, Put *p)
{
    /* what a record is made of, read in this order; the properties only without their
     * string */
    static const int order[M_COUNT - 1] = {M_TOPIC, M_QUEUE_ID, M_FLAG, M_BODY,
                                           M_PROPERTIES_STRING, M_SYS_FLAG, M_BORN_TS,
                                           M_BORN_HOST, M_RECONSUME, M_PREPARED};
    PyObject *names[M_COUNT] = {
        [M_TOPIC] = s_topic, [M_QUEUE_ID] = s_queue_id, [M_BODY] = s_body,
        [M_PROPERTIES] = s_properties, [M_FLAG] = s_flag, [M_SYS_FLAG] = s_sys_flag,
        [M_BORN_TS] = s_born_timestamp, [M_BORN_HOST] = s_born_host,
        [M_RECONSUME] = s_reconsume_times, [M_PREPARED] = s_prepared_transaction_offset,
        [M_PROPERTIES_STRING] = s_properties_string};
    PyObject **a = p->held;
    Rec *r = &p->r;
    /* store.Message: its fields read from their slots, the class kept for the next puts
     * (finding the slots compares a hundred names). */
    Py_ssize_t where[M_COUNT];
    const Py_ssize_t *at = slots_class(&message_kept, (PyObject *)Py_TYPE(m), message_fields,
                                       M_COUNT, where, 0) ? where : NULL;
    int ok = 1;
    for (int j = 0; ok && j < M_COUNT - 1; j++)
        if ((a[order[j]] = field(m, at, order[j], names[order[j]])) == NULL)
            ok = 0;
    if (ok && a[M_PROPERTIES_STRING] == Py_None) {  /* written from the dict, in Java's order */
        ok = (a[M_PROPERTIES] = field(m, at, M_PROPERTIES, s_properties)) != NULL;
        if (ok) {
            Py_SETREF(a[M_PROPERTIES_STRING],
                      properties_string(NULL, &a[M_PROPERTIES], 1, NULL));  /* send.c */
            ok = a[M_PROPERTIES_STRING] != NULL;
        }
    }
    if (!ok)
        PyErr_Clear();  /* the original meets the same trouble and says it */
    p->size = -1;
    if (ok && int_in(a[M_QUEUE_ID], I32, &r->queue_id) && int_in(a[M_FLAG], I32, &r->flag)
        && int_in(a[M_SYS_FLAG], I32, &r->sys_flag) && int_in(a[M_BORN_TS], I64, &r->born_ts)
        && int_in(a[M_RECONSUME], I32, &r->reconsume)
        && int_in(a[M_PREPARED], I64, &r->prepared) && PyBytes_CheckExact(a[M_BODY])
        && PyBytes_CheckExact(a[M_BORN_HOST])
        && PyBytes_GET_SIZE(a[M_BODY]) <= max_body
        && (r->topic = utf8_of(a[M_TOPIC], &r->topic_len)) != NULL
        && (r->props = utf8_of(a[M_PROPERTIES_STRING], &r->props_len)) != NULL) {
        r->body = PyBytes_AS_STRING(a[M_BODY]); r->body_len = PyBytes_GET_SIZE(a[M_BODY]);
        r->born = PyBytes_AS_STRING(a[M_BORN_HOST]); r->born_len = PyBytes_GET_SIZE(a[M_BORN_HOST]);
        r->store = PyBytes_AS_STRING(store); r->store_len = PyBytes_GET_SIZE(store);
        p->size = rec_size(r);
    }
    if (p->size < 0)
        return 0;
    r->crc = crc_raw((const unsigned char *)r->body, r->body_len);
    return 1;
}

/* encode_messages(messages, store_host, max_body) -> (records, sizes). Every message is read
 * first, so that the records are written once, into a bytearray of their total size. Any
 * message out of the common case (see rec_size; a refusal among them) makes the original do
 * the whole put. */
PyObject *
encode_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long max_body;
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])
        || !int_in(args[2], I64, &max_body))
        return fallback(B_ENCODE_MESSAGES, args, nargs, NULL);
    PyObject *msgs = args[0], *out = NULL;
    Py_ssize_t n = PyList_GET_SIZE(msgs), done = 0;
    Put *puts = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Put));
    if (puts == NULL)
        return PyErr_NoMemory();
    int rc = 1;
    long long total = 0;
    for (; rc > 0 && done < n; done++) {
        PyObject *m = Py_NewRef(PyList_GET_ITEM(msgs, done));
        rc = read_put(m, args[1], max_body, &puts[done]);
        Py_DECREF(m);
        total += rc > 0 ? puts[done].size : 0;
    }
    if (rc > 0 && total > PY_SSIZE_T_MAX)
        rc = 0;
    if (rc > 0) {
        PyObject *records = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
        PyObject *sizes = records ? PyList_New(n) : NULL;
        unsigned char *o = records ? (unsigned char *)PyByteArray_AS_STRING(records) : NULL;
        for (Py_ssize_t i = 0; sizes != NULL && i < n; i++) {
            rec_write(o, &puts[i].r, puts[i].size);
            o += puts[i].size;
            PyObject *size = PyLong_FromLongLong(puts[i].size);
            if (size == NULL)
                Py_CLEAR(sizes);
            else
                PyList_SET_ITEM(sizes, i, size);
        }
        out = sizes ? PyTuple_New(2) : NULL;
        if (out != NULL) {
            PyTuple_SET_ITEM(out, 0, records);
            PyTuple_SET_ITEM(out, 1, sizes);
        } else {
            Py_XDECREF(records);
            Py_XDECREF(sizes);
        }
        rc = out ? 1 : -1;
    }
    for (Py_ssize_t i = 0; i < done; i++)
        for (int j = 0; j < M_COUNT; j++)
            Py_XDECREF(puts[i].held[j]);
    PyMem_Free(puts);
    if (rc != 0)
        return out;  /* the records, or an error */
    return fallback(B_ENCODE_MESSAGES, args, nargs, NULL);
}

/* Patch each record of d[0:len) (laid end to end, `sizes` long) with its queue offset, physical
 * offset and store time, as records.stamp_records does: every record's place is checked before
 * any is written; 0 (nothing written) when one is odd. */
int
stamp_buffer(unsigned char *d, Py_ssize_t len, PyObject *sizes, long long qoff, long long phys,
             long long ts)
{
    Py_ssize_t n = PyList_GET_SIZE(sizes);
    long long pos = 0, size;
    int ok = qoff <= LLONG_MAX - n;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        ok = int_in(PyList_GET_ITEM(sizes, i), 1, len, &size) && pos + 52 <= len
             && phys <= LLONG_MAX - pos
             && pos + 48 + (rd32(d + pos + 36) & BORNHOST_V6_FLAG ? 20 : 8) + 8 <= len;
        pos += size;
    }
    for (Py_ssize_t i = 0, at = 0; ok && i < n; i++) {
        unsigned char *rec = d + at;
        wr64(rec + 20, (uint64_t)(qoff + i));
        wr64(rec + 28, (uint64_t)(phys + at));
        wr64(rec + 48 + (rd32(rec + 36) & BORNHOST_V6_FLAG ? 20 : 8), (uint64_t)ts);
        at += (Py_ssize_t)PyLong_AsLongLong(PyList_GET_ITEM(sizes, i));
    }
    return ok;
}

/* stamp_records(records, sizes, queue_offset, physical_offset, store_timestamp): anything odd
 * goes to the original. */
PyObject *
stamp_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long qoff, phys, ts;
    Py_buffer v;
    if (nargs != 5 || !PyList_CheckExact(args[1]) || !int_in(args[2], I64, &qoff)
        || !int_in(args[3], I64, &phys) || !int_in(args[4], I64, &ts)
        || PyObject_GetBuffer(args[0], &v, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return fallback(B_STAMP_RECORDS, args, nargs, NULL);
    }
    int ok = stamp_buffer(v.buf, v.len, args[1], qoff, phys, ts);
    PyBuffer_Release(&v);
    if (!ok)
        return fallback(B_STAMP_RECORDS, args, nargs, NULL);
    Py_RETURN_NONE;
}

#define INDEX_HEADER_SIZE 40

/* index_put's entries for keys[i] at offsets[i] (at most `limit` - *count of them) written
 * into the index file's bytes `v`, *count advanced past them: 1, or 0 with nothing written
 * when a key or an offset is odd, a place is outside `v` or memory runs out (no exception). */
static int
index_write(Py_buffer *v, long long slots, long long *count, long long limit, long long begin,
            PyObject *topic, PyObject *keys, PyObject *offsets, long long stamp)
{
    long long diff;
    if (__builtin_sub_overflow(stamp, begin, &diff))
        return 0;
    diff = diff < 0 ? 0 : diff / 1000;
    if (diff > 0x7FFFFFFF)
        diff = 0x7FFFFFFF;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(offsets) < n)
        n = PyList_GET_SIZE(offsets);
    if (n > limit - *count)
        n = limit > *count ? (Py_ssize_t)(limit - *count) : 0;
    uint32_t *hashes = PyMem_Malloc(sizeof(uint32_t) * (n ? n : 1));
    long long *phys = PyMem_Malloc(sizeof(long long) * (n ? n : 1));
    uint32_t topic_hash = 0;
    int ok = hashes != NULL && phys != NULL && hash_more(topic, &topic_hash);
    topic_hash = 31 * topic_hash + '#';
    long long table = INDEX_HEADER_SIZE + slots * 4;
    ok = ok && table + (*count + n) * 20 <= v->len;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        uint32_t h = topic_hash;
        ok = PyUnicode_CheckExact(key) && hash_more(key, &h)
             && int_in(PyList_GET_ITEM(offsets, i), I64, &phys[i]);
        int32_t j = (int32_t)h;  /* index_key_hash: |hashCode|, Integer.MIN_VALUE to 0 */
        hashes[i] = j == INT32_MIN ? 0 : (uint32_t)(j < 0 ? -j : j);
    }
    long long c = *count;
    for (Py_ssize_t i = 0; ok && i < n; i++, c++) {
        unsigned char *slot = (unsigned char *)v->buf + INDEX_HEADER_SIZE + hashes[i] % slots * 4;
        int32_t prev = rd32(slot);
        if (prev <= 0 || prev > c)
            prev = 0;
        unsigned char *e = (unsigned char *)v->buf + table + c * 20;
        wr32(e, hashes[i]); wr64(e + 4, (uint64_t)phys[i]); wr32(e + 12, (uint32_t)diff);
        wr32(e + 16, (uint32_t)prev);
        wr32(slot, (uint32_t)c);
    }
    PyMem_Free(hashes);
    PyMem_Free(phys);
    if (ok)
        *count = c;
    return ok;
}

/* index_put(buf, slots, count, limit, begin_timestamp, topic, keys, offsets, store_timestamp)
 * -> count: every key hashed and every place checked before anything is written, so that
 * anything odd goes to the original with the file as it was. */
PyObject *
index_put(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long slots, count, limit, begin, stamp;
    Py_buffer v;
    if (nargs != 9 || !int_in(args[1], 1, 2147483647LL, &slots)
        || !int_in(args[2], 0, 2147483647LL, &count) || !int_in(args[3], I32, &limit)
        || !int_in(args[4], I64, &begin) || !int_in(args[8], I64, &stamp)
        || !PyUnicode_CheckExact(args[5]) || !PyList_CheckExact(args[6])
        || !PyList_CheckExact(args[7])
        || PyObject_GetBuffer(args[0], &v, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return fallback(B_INDEX_PUT, args, nargs, NULL);
    }
    int ok = index_write(&v, slots, &count, limit, begin, args[5], args[6], args[7], stamp);
    PyBuffer_Release(&v);
    if (!ok)
        return fallback(B_INDEX_PUT, args, nargs, NULL);
    return PyLong_FromLongLong(count);
}

/* index_in_last(files, topic, keys, offsets, store_timestamp)'s common case, from the same
 * attributes (index.py's IndexFile): 1 written, 0 not this path (nothing written, no
 * exception), -1 an error raised after the write. */
int
index_last_write(PyObject *files, PyObject *topic, PyObject *keys, PyObject *offsets,
                 PyObject *stamp_obj)
{
    long long count, limit, slots, begin, end_phy, first, last_off, stamp;
    PyObject *last, *mf = NULL, *mm = NULL, *ro = NULL;
    Py_buffer v;
    if (!PyList_CheckExact(files) || PyList_GET_SIZE(files) == 0 || !PyUnicode_CheckExact(topic)
        || !PyList_CheckExact(keys) || !PyList_CheckExact(offsets)
        || PyList_GET_SIZE(keys) == 0 || PyList_GET_SIZE(keys) != PyList_GET_SIZE(offsets)
        || !int_in(stamp_obj, I64, &stamp)
        || !int_in(PyList_GET_ITEM(offsets, 0), I64, &first)
        || !int_in(PyList_GET_ITEM(offsets, PyList_GET_SIZE(offsets) - 1), I64, &last_off))
        return 0;
    last = Py_NewRef(PyList_GET_ITEM(files, PyList_GET_SIZE(files) - 1));
    int rc = 0;
    if (!int_attr(last, s_index_count, 0, 2147483647LL, &count)
        || !int_attr(last, s_max_entries, I32, &limit)
        || !int_attr(last, s_slots, 1, 2147483647LL, &slots)
        || !int_attr(last, s_begin_timestamp, I64, &begin)
        || !int_attr(last, s_end_phy_offset, I64, &end_phy)
        || count + PyList_GET_SIZE(keys) > limit || (count == 1 && begin == 0) || first < end_phy
        || (mf = PyObject_GetAttr(last, s_mf)) == NULL)
        goto done;
    Py_ssize_t where[MF_COUNT];
    const Py_ssize_t *at = fields_at(&mapped_file_kept, mf, mapped_file_fields, MF_COUNT, where);
    if ((ro = field(mf, at, MF_READONLY, s_readonly)) != Py_False
        || (mm = field(mf, at, MF_MM, s_mm)) == NULL || mm == Py_None
        || PyObject_GetBuffer(mm, &v, PyBUF_WRITABLE) < 0)
        goto done;
    rc = index_write(&v, slots, &count, limit, begin, topic, keys, offsets, stamp);
    PyBuffer_Release(&v);
    if (rc && (set_int_attr(last, s_index_count, count) < 0
               || PyObject_SetAttr(last, s_end_timestamp, stamp_obj) < 0
               || set_int_attr(last, s_end_phy_offset, last_off) < 0))
        rc = -1;
done:
    if (rc == 0)
        PyErr_Clear();
    Py_DECREF(last);
    Py_XDECREF(mf);
    Py_XDECREF(ro);
    Py_XDECREF(mm);
    return rc;
}

/* index_in_last(files, topic, keys, offsets, store_timestamp) -> bool: anything but the
 * common case goes to the original. */
PyObject *
index_in_last(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int rc = nargs == 5 ? index_last_write(args[0], args[1], args[2], args[3], args[4]) : 0;
    if (rc < 0)
        return NULL;
    if (rc)
        Py_RETURN_TRUE;
    return fallback(B_INDEX_IN_LAST, args, nargs, NULL);
}
