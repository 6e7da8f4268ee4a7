/* Compiled twins of the byte-level hot functions (rmqnode/speedups.py binds them).
 *
 * Each function here takes the same arguments as its pure-Python original and gives the same
 * result. Only the common, well-formed case is done in C: whatever is unusual (a malformed
 * frame, a value of an unexpected type, an int out of range, a lone surrogate) is handed to
 * the pure-Python original with the caller's arguments, so every refusal is raised by the one
 * definition of it, with its exact wording. speedups.bind() gives this module those originals
 * and the few Python objects the results are built from; until one is bound, its twin always
 * falls back (and one that is never bound fails with a plain RuntimeError).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* -- bound Python objects ------------------------------------------------------------------ */

enum {
    B_JAVA_HASH, B_DECODE_PROPERTIES, B_DECODE_BATCH, B_ENCODE_RECORD, B_ENCODE,
    B_DECODE_FRAME, B_DECODE_FRAMES,
    B_BATCH_ENTRY, B_REMOTING_COMMAND, B_LANGUAGES, B_LANGUAGE_CODES, B_DECODE_JSON_HEADER,
    B_CRC32, B_ENCODE_MESSAGES, B_PROPERTIES_STRING, B_STAMP_RECORDS, B_INDEX_PUT,
    B_OFFSET_MSG_IDS, B_COUNT
};
static const char *const bound_names[B_COUNT] = {
    "java_hash", "decode_properties", "decode_batch", "encode_record", "encode",
    "decode_frame", "decode_frames",
    "BatchEntry", "RemotingCommand", "LANGUAGES", "LANGUAGE_CODES", "decode_json_header",
    "crc32", "encode_messages", "properties_string", "stamp_records", "index_put",
    "offset_msg_ids",
};
static PyObject *bound[B_COUNT];

/* Attribute names, interned at import. */
static PyObject *s_code, *s_opaque, *s_flag, *s_remark, *s_ext_fields, *s_body, *s_language,
    *s_version, *s_serialize_type, *s_topic, *s_queue_id, *s_sys_flag, *s_born_timestamp,
    *s_born_host, *s_reconsume_times, *s_prepared_transaction_offset, *s_properties,
    *s_properties_string;

static PyObject *
bind(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "sO:bind", &name, &obj))
        return NULL;
    for (int i = 0; i < B_COUNT; i++) {
        if (strcmp(name, bound_names[i]) == 0) {
            Py_INCREF(obj);
            Py_XSETREF(bound[i], obj);
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_KeyError, "nothing named %s to bind", name);
    return NULL;
}

/* The pure-Python original, called with the caller's own arguments. */
static PyObject *
fallback(int which, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (bound[which] == NULL) {
        PyErr_Format(PyExc_RuntimeError, "speedups: %s is not bound", bound_names[which]);
        return NULL;
    }
    return PyObject_Vectorcall(bound[which], args, nargs, kwnames);
}

/* -- big-endian fields ----------------------------------------------------------------------- */

static inline int32_t rd32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}
static inline int16_t rd16(const unsigned char *p) { return (int16_t)((uint16_t)p[0] << 8 | p[1]); }
static inline void wr16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = (unsigned char)v; }
static inline void wr32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}
static inline void wr64(unsigned char *p, uint64_t v) { wr32(p, (uint32_t)(v >> 32)); wr32(p + 4, (uint32_t)v); }

/* An exact int within [lo, hi] into *out; 0 (and no exception) when it is anything else. */
static int
int_in(PyObject *o, long long lo, long long hi, long long *out)
{
    if (o == NULL || !PyLong_CheckExact(o))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}
#define I16 -32768LL, 32767LL
#define I32 -2147483648LL, 2147483647LL
#define I64 LLONG_MIN, LLONG_MAX

/* UTF-8 of an exact str; NULL (and no exception) for anything else, lone surrogates included. */
static const char *
utf8_of(PyObject *o, Py_ssize_t *len)
{
    if (o == NULL || !PyUnicode_CheckExact(o))
        return NULL;
    const char *s = PyUnicode_AsUTF8AndSize(o, len);
    if (s == NULL)
        PyErr_Clear();
    return s;
}

/* -- a growable byte buffer ---------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
    unsigned char small[512];
} Buf;

static void buf_init(Buf *b) { b->p = b->small; b->len = 0; b->cap = sizeof b->small; }
static void buf_free(Buf *b) { if (b->p != b->small) PyMem_Free(b->p); }

static int
buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 1;
    Py_ssize_t cap = (b->len + more) * 2;
    unsigned char *p = PyMem_Malloc(cap);
    if (p == NULL)
        return 0;
    memcpy(p, b->p, b->len);
    buf_free(b);
    b->p = p;
    b->cap = cap;
    return 1;
}

static int
buf_put(Buf *b, const void *data, Py_ssize_t n)
{
    if (!buf_reserve(b, n))
        return 0;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 1;
}

#define buf_lit(b, s) buf_put((b), (s), (Py_ssize_t)sizeof(s) - 1)

static int
buf_int(Buf *b, long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    return buf_put(b, tmp, n);
}

/* A JSON string as json.encoder.encode_basestring writes it (ensure_ascii=False), UTF-8. */
static int
buf_json_str(Buf *b, const char *s, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!buf_reserve(b, n * 6 + 2))
        return 0;
    unsigned char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = c; }
        else if (c >= 0x20) *o++ = c;
        else {
            *o++ = '\\';
            switch (c) {
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u'; *o++ = '0'; *o++ = '0'; *o++ = hex[c >> 4]; *o++ = hex[c & 0xF];
            }
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 1;
}

/* -- message.py ------------------------------------------------------------------------------ */

/* String.hashCode continued over `text`'s UTF-16 code units; 0 for a lone surrogate. */
static int
hash_more(PyObject *text, uint32_t *hash)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    uint32_t h = *hash;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF)  /* a lone surrogate: UTF-16 cannot hold it */
                return 0;
            h = 31 * h + c;
        } else {
            c -= 0x10000;
            h = 31 * h + (0xD800 + (c >> 10));
            h = 31 * h + (0xDC00 + (c & 0x3FF));
        }
    }
    *hash = h;
    return 1;
}

static PyObject *
java_hash(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t h = 0;
    if (nargs != 1 || !PyUnicode_CheckExact(args[0]) || !hash_more(args[0], &h))
        return fallback(B_JAVA_HASH, args, nargs, NULL);
    return PyLong_FromLong((long)(int32_t)h);
}

/* Java's string2messageProperties into `props`: split on \x02, each piece at its first \x01. */
static int
properties_into(PyObject *props, PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), start = 0;
    while (start <= n) {
        Py_ssize_t end = PyUnicode_FindChar(text, 0x02, start, n, 1);
        if (end == -2)
            return 0;
        if (end < 0)
            end = n;
        Py_ssize_t sep = PyUnicode_FindChar(text, 0x01, start, end, 1);
        if (sep == -2)
            return 0;
        if (sep > start && sep + 1 < end) {
            PyObject *name = PyUnicode_Substring(text, start, sep);
            PyObject *value = name ? PyUnicode_Substring(text, sep + 1, end) : NULL;
            int rc = value ? PyDict_SetItem(props, name, value) : -1;
            Py_XDECREF(name);
            Py_XDECREF(value);
            if (rc < 0)
                return 0;
        }
        start = end + 1;
    }
    return 1;
}

static PyObject *
decode_properties(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyUnicode_CheckExact(args[0]))
        return fallback(B_DECODE_PROPERTIES, args, nargs, NULL);
    PyObject *props = PyDict_New();
    if (props != NULL && !properties_into(props, args[0]))
        Py_CLEAR(props);
    return props;
}

static PyObject *
decode_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyBytes_CheckExact(args[0]) || bound[B_BATCH_ENTRY] == NULL)
        return fallback(B_DECODE_BATCH, args, nargs, NULL);
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]), pos = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (pos < n) {
        if (n - pos < 20)
            goto refuse;
        int32_t total = rd32(d + pos + 0), flag = rd32(d + pos + 12), body_len = rd32(d + pos + 16);
        Py_ssize_t end = pos + (Py_ssize_t)total, body_start = pos + 20;
        if (total < 22 || end > n || body_len < 0 || body_start + body_len + 2 > end)
            goto refuse;
        int16_t props_len = rd16(d + body_start + body_len);
        Py_ssize_t props_start = body_start + body_len + 2;
        if (props_len < 0 || props_start + props_len != end)
            goto refuse;
        PyObject *raw = PyUnicode_DecodeUTF8((const char *)d + props_start, props_len, "strict");
        if (raw == NULL) {
            PyErr_Clear();
            goto refuse;
        }
        PyObject *items[4] = {
            PyBytes_FromStringAndSize((const char *)d + body_start, body_len), PyDict_New(),
            PyLong_FromLong(flag), raw};
        PyObject *entry = NULL;
        if (items[0] && items[1] && items[2] && properties_into(items[1], raw))
            entry = PyObject_Vectorcall(bound[B_BATCH_ENTRY], items, 4, NULL);
        for (int i = 0; i < 4; i++)
            Py_XDECREF(items[i]);
        if (entry == NULL || PyList_Append(out, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(entry);
        pos = end;
    }
    return out;
refuse:
    Py_DECREF(out);
    return fallback(B_DECODE_BATCH, args, nargs, NULL);
}

/* offset_msg_ids(store_host, commit_log_offset, sizes) -> ids, each offset unsigned. */
static PyObject *
offset_msg_ids(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char hex[] = "0123456789ABCDEF";
    long long offset, size;
    if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !int_in(args[1], 0, LLONG_MAX, &offset)
        || !PyList_CheckExact(args[2]))
        return fallback(B_OFFSET_MSG_IDS, args, nargs, NULL);
    const unsigned char *host = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t host_len = PyBytes_GET_SIZE(args[0]), n = PyList_GET_SIZE(args[2]);
    PyObject *ids = PyList_New(n);
    for (Py_ssize_t i = 0; ids != NULL && i < n; i++) {
        PyObject *id = PyUnicode_New((host_len + 8) * 2, 127);
        if (id == NULL) {
            Py_CLEAR(ids);
            break;
        }
        Py_UCS1 *o = PyUnicode_1BYTE_DATA(id);
        for (Py_ssize_t j = 0; j < host_len; j++) {
            *o++ = hex[host[j] >> 4];
            *o++ = hex[host[j] & 0xF];
        }
        for (int shift = 60; shift >= 0; shift -= 4)
            *o++ = hex[(offset >> shift) & 0xF];
        PyList_SET_ITEM(ids, i, id);
        if (!int_in(PyList_GET_ITEM(args[2], i), 0, LLONG_MAX - offset, &size)) {
            Py_DECREF(ids);
            return fallback(B_OFFSET_MSG_IDS, args, nargs, NULL);
        }
        offset += size;
    }
    return ids;
}

/* -- records.py ------------------------------------------------------------------------------ */

#define BORNHOST_V6_FLAG 0x10
#define STOREHOST_V6_FLAG 0x20
#define MESSAGE_MAGIC_V1 (-626843481)

static const char *const record_kw[] = {
    "topic", "queue_id", "flag", "body", "properties", "sys_flag", "born_timestamp", "born_host",
    "store_timestamp", "store_host", "reconsume_times", "prepared_transaction_offset",
    "queue_offset", "physical_offset", "crc"};
enum { R_TOPIC, R_QUEUE_ID, R_FLAG, R_BODY, R_PROPS, R_SYS_FLAG, R_BORN_TS, R_BORN_HOST,
       R_STORE_TS, R_STORE_HOST, R_RECONSUME, R_PREPARED, R_QOFF, R_PHYS, R_CRC, R_COUNT };

/* One record's fields, as encode_record writes them. */
typedef struct {
    long long queue_id, flag, sys_flag, born_ts, store_ts, reconsume, prepared, qoff, phys, crc;
    const char *born, *store, *body, *topic, *props;
    Py_ssize_t born_len, store_len, body_len, topic_len, props_len;
} Rec;

/* The record's size, its sysFlag's host bits set from the hosts; -1 for anything but a
 * v1-magic record (topic up to 127 bytes) with hosts of 8 or 20 bytes and properties that fit. */
static long long
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

static void
rec_write(unsigned char *o, const Rec *r, long long size)
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
    wr16(o, (uint16_t)r->props_len); o += 2;
    memcpy(o, r->props, r->props_len);
}

/* body_crc(body) into *crc: 1 done, 0 fall back, -1 an error. zlib.crc32 is called
 * directly (body_crc's mask applied here): a Python frame per message cost more than it. */
static int
crc_of(PyObject *body, long long *crc)
{
    if (bound[B_CRC32] == NULL)
        return 0;
    PyObject *c = PyObject_Vectorcall(bound[B_CRC32], &body, 1, NULL);
    if (c == NULL)
        return -1;
    int ok = int_in(c, 0, 0xFFFFFFFFLL, crc);
    Py_DECREF(c);
    *crc &= 0x7FFFFFFF;
    return ok;
}

/* encode_record for a v1-magic record (topic up to 127 bytes), hosts of 8 or 20 bytes. */
static PyObject *
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
    if (v[R_CRC] == NULL || v[R_CRC] == Py_None) {
        int ok = crc_of(body, &r.crc);
        if (ok < 0)
            return NULL;
        if (!ok)
            goto refuse;
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL)
        return NULL;
    rec_write((unsigned char *)PyByteArray_AS_STRING(out), &r, size);
    return out;
refuse:
    return fallback(B_ENCODE_RECORD, args, nargs, kwnames);
}


/* encode_messages(messages, store_host, max_body) -> (records, sizes). Any message out of
 * the common case (see rec_size; a refusal among them) makes the original do the whole put. */
static PyObject *
encode_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long max_body;
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])
        || !int_in(args[2], I64, &max_body))
        return fallback(B_ENCODE_MESSAGES, args, nargs, NULL);
    enum { A_TOPIC, A_QUEUE_ID, A_FLAG, A_BODY, A_PROPS, A_SYS_FLAG, A_BORN_TS, A_BORN_HOST,
           A_RECONSUME, A_PREPARED, A_COUNT };
    PyObject *names[A_COUNT] = {s_topic, s_queue_id, s_flag, s_body, s_properties_string,
                                s_sys_flag, s_born_timestamp, s_born_host, s_reconsume_times,
                                s_prepared_transaction_offset};
    PyObject *msgs = args[0], *store = args[1], *sizes = PyList_New(0), *out = NULL;
    Buf b;
    buf_init(&b);
    int hard_error = sizes == NULL;
    for (Py_ssize_t i = 0; !hard_error && i < PyList_GET_SIZE(msgs); i++) {
        PyObject *m = Py_NewRef(PyList_GET_ITEM(msgs, i)), *a[A_COUNT] = {0};
        Rec r = {0};
        int ok = 1;
        for (int j = 0; ok && j < A_COUNT; j++)
            if ((a[j] = PyObject_GetAttr(m, names[j])) == NULL)
                ok = 0;
        if (ok && a[A_PROPS] == Py_None) {  /* written from the dict, in Java's order */
            PyObject *props = PyObject_GetAttr(m, s_properties);
            ok = props != NULL && bound[B_PROPERTIES_STRING] != NULL;
            if (ok) {
                Py_SETREF(a[A_PROPS], PyObject_Vectorcall(bound[B_PROPERTIES_STRING], &props, 1,
                                                          NULL));
                ok = a[A_PROPS] != NULL;
            }
            Py_XDECREF(props);
        }
        if (!ok)
            PyErr_Clear();  /* the original meets the same trouble and says it */
        long long size = -1;
        if (ok && int_in(a[A_QUEUE_ID], I32, &r.queue_id) && int_in(a[A_FLAG], I32, &r.flag)
            && int_in(a[A_SYS_FLAG], I32, &r.sys_flag) && int_in(a[A_BORN_TS], I64, &r.born_ts)
            && int_in(a[A_RECONSUME], I32, &r.reconsume)
            && int_in(a[A_PREPARED], I64, &r.prepared) && PyBytes_CheckExact(a[A_BODY])
            && PyBytes_CheckExact(a[A_BORN_HOST])
            && PyBytes_GET_SIZE(a[A_BODY]) <= max_body
            && (r.topic = utf8_of(a[A_TOPIC], &r.topic_len)) != NULL
            && (r.props = utf8_of(a[A_PROPS], &r.props_len)) != NULL) {
            r.body = PyBytes_AS_STRING(a[A_BODY]); r.body_len = PyBytes_GET_SIZE(a[A_BODY]);
            r.born = PyBytes_AS_STRING(a[A_BORN_HOST]); r.born_len = PyBytes_GET_SIZE(a[A_BORN_HOST]);
            r.store = PyBytes_AS_STRING(store); r.store_len = PyBytes_GET_SIZE(store);
            size = rec_size(&r);
        }
        int crc = size < 0 ? 0 : crc_of(a[A_BODY], &r.crc), written = 0;
        if (crc > 0 && buf_reserve(&b, (Py_ssize_t)size)) {
            rec_write(b.p + b.len, &r, size);
            b.len += (Py_ssize_t)size;
            PyObject *n = PyLong_FromLongLong(size);
            written = n != NULL && PyList_Append(sizes, n) == 0;
            Py_XDECREF(n);
        }
        hard_error = !written && PyErr_Occurred() != NULL;
        for (int j = 0; j < A_COUNT; j++)
            Py_XDECREF(a[j]);
        Py_DECREF(m);
        if (!written)
            break;  /* an error, or the original's to do */
    }
    if (!hard_error && PyList_GET_SIZE(sizes) == PyList_GET_SIZE(msgs)) {
        PyObject *records = PyByteArray_FromStringAndSize((const char *)b.p, b.len);
        out = records ? Py_BuildValue("(NO)", records, sizes) : NULL;
    }
    buf_free(&b);
    Py_XDECREF(sizes);
    if (out != NULL || hard_error)
        return out;
    return fallback(B_ENCODE_MESSAGES, args, nargs, NULL);
}

/* stamp_records(records, sizes, queue_offset, physical_offset, store_timestamp): every
 * record's place checked before any is written; anything odd goes to the original. */
static PyObject *
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
    unsigned char *d = v.buf;
    PyObject *sizes = args[1];
    Py_ssize_t n = PyList_GET_SIZE(sizes);
    long long pos = 0, size;
    int ok = qoff <= LLONG_MAX - n;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        ok = int_in(PyList_GET_ITEM(sizes, i), 1, v.len, &size) && pos + 52 <= v.len
             && phys <= LLONG_MAX - pos
             && pos + 48 + (rd32(d + pos + 36) & BORNHOST_V6_FLAG ? 20 : 8) + 8 <= v.len;
        pos += size;
    }
    for (Py_ssize_t i = 0, at = 0; ok && i < n; i++) {
        unsigned char *rec = d + at;
        wr64(rec + 20, (uint64_t)(qoff + i));
        wr64(rec + 28, (uint64_t)(phys + at));
        wr64(rec + 48 + (rd32(rec + 36) & BORNHOST_V6_FLAG ? 20 : 8), (uint64_t)ts);
        at += (Py_ssize_t)PyLong_AsLongLong(PyList_GET_ITEM(sizes, i));
    }
    PyBuffer_Release(&v);
    if (!ok)
        return fallback(B_STAMP_RECORDS, args, nargs, NULL);
    Py_RETURN_NONE;
}

#define INDEX_HEADER_SIZE 40

/* index_put(buf, slots, count, limit, begin_timestamp, topic, keys, offsets, store_timestamp)
 * -> count: every key hashed and every place checked before anything is written, so that
 * anything odd goes to the original with the file as it was. */
static PyObject *
index_put(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long slots, count, limit, begin, stamp, diff;
    Py_buffer v;
    if (nargs != 9 || !int_in(args[1], 1, 2147483647LL, &slots)
        || !int_in(args[2], 0, 2147483647LL, &count) || !int_in(args[3], I32, &limit)
        || !int_in(args[4], I64, &begin) || !int_in(args[8], I64, &stamp)
        || !PyUnicode_CheckExact(args[5]) || !PyList_CheckExact(args[6])
        || !PyList_CheckExact(args[7]) || __builtin_sub_overflow(stamp, begin, &diff)
        || PyObject_GetBuffer(args[0], &v, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return fallback(B_INDEX_PUT, args, nargs, NULL);
    }
    diff = diff < 0 ? 0 : diff / 1000;
    if (diff > 0x7FFFFFFF)
        diff = 0x7FFFFFFF;
    PyObject *keys = args[6], *offsets = args[7];
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(offsets) < n)
        n = PyList_GET_SIZE(offsets);
    if (n > limit - count)
        n = limit > count ? (Py_ssize_t)(limit - count) : 0;
    uint32_t *hashes = PyMem_Malloc(sizeof(uint32_t) * (n ? n : 1));
    long long *phys = PyMem_Malloc(sizeof(long long) * (n ? n : 1));
    uint32_t topic_hash = 0;
    int ok = hashes != NULL && phys != NULL && hash_more(args[5], &topic_hash);
    topic_hash = 31 * topic_hash + '#';
    long long table = INDEX_HEADER_SIZE + slots * 4;
    ok = ok && table + (count + n) * 20 <= v.len;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        uint32_t h = topic_hash;
        ok = PyUnicode_CheckExact(key) && hash_more(key, &h)
             && int_in(PyList_GET_ITEM(offsets, i), I64, &phys[i]);
        int32_t j = (int32_t)h;  /* index_key_hash: |hashCode|, Integer.MIN_VALUE to 0 */
        hashes[i] = j == INT32_MIN ? 0 : (uint32_t)(j < 0 ? -j : j);
    }
    for (Py_ssize_t i = 0; ok && i < n; i++, count++) {
        unsigned char *slot = (unsigned char *)v.buf + INDEX_HEADER_SIZE + hashes[i] % slots * 4;
        int32_t prev = rd32(slot);
        if (prev <= 0 || prev > count)
            prev = 0;
        unsigned char *e = (unsigned char *)v.buf + table + count * 20;
        wr32(e, hashes[i]); wr64(e + 4, (uint64_t)phys[i]); wr32(e + 12, (uint32_t)diff);
        wr32(e + 16, (uint32_t)prev);
        wr32(slot, (uint32_t)count);
    }
    PyMem_Free(hashes);
    PyMem_Free(phys);
    PyBuffer_Release(&v);
    if (!ok)
        return fallback(B_INDEX_PUT, args, nargs, NULL);
    return PyLong_FromLongLong(count);
}

/* -- codec.py: frames ------------------------------------------------------------------------ */

#define SERIALIZE_JSON 0
#define SERIALIZE_ROCKETMQ 1

typedef struct {
    long long code, opaque, flag, version;
    PyObject *remark, *ext, *language, *body;
} Cmd;


/* The attributes of a RemotingCommand; 0 when any is not of the type the encoders expect. */
static int
cmd_read(PyObject *cmd, Cmd *c, PyObject **refs)
{
    PyObject *names[8] = {s_code, s_opaque, s_flag, s_version, s_remark, s_ext_fields, s_language,
                          s_body};
    for (int i = 0; i < 8; i++) {
        refs[i] = PyObject_GetAttr(cmd, names[i]);
        if (refs[i] == NULL) {
            PyErr_Clear();
            return 0;
        }
    }
    c->remark = refs[4]; c->ext = refs[5]; c->language = refs[6]; c->body = refs[7];
    return int_in(refs[0], I64, &c->code) && int_in(refs[1], I64, &c->opaque)
           && int_in(refs[2], I64, &c->flag) && int_in(refs[3], I64, &c->version)
           && (c->remark == Py_None || PyUnicode_CheckExact(c->remark))
           && (c->ext == Py_None || PyDict_CheckExact(c->ext)) && PyUnicode_CheckExact(c->language)
           && PyBytes_CheckExact(c->body);
}

/* encode_json_header: the header JSON with extFields as text; 0 to fall back. */
static int
json_header(Buf *b, const Cmd *c)
{
    Py_ssize_t n;
    const char *s;
    if (!buf_lit(b, "{\"code\":") || !buf_int(b, c->code))
        return 0;
    if (c->ext != Py_None) {
        if (!buf_lit(b, ",\"extFields\":{"))
            return 0;
        Py_ssize_t i = 0;
        PyObject *k, *v;
        int first = 1;
        while (PyDict_Next(c->ext, &i, &k, &v)) {
            Py_ssize_t kn, vn;
            const char *ks = utf8_of(k, &kn), *vs = utf8_of(v, &vn);
            if (ks == NULL || vs == NULL)
                return 0;
            if ((!first && !buf_lit(b, ",")) || !buf_json_str(b, ks, kn) || !buf_lit(b, ":")
                || !buf_json_str(b, vs, vn))
                return 0;
            first = 0;
        }
        if (!buf_lit(b, "}"))
            return 0;
    }
    if (!buf_lit(b, ",\"flag\":") || !buf_int(b, c->flag) || !buf_lit(b, ",\"language\":")
        || (s = utf8_of(c->language, &n)) == NULL || !buf_json_str(b, s, n)
        || !buf_lit(b, ",\"opaque\":") || !buf_int(b, c->opaque))
        return 0;
    if (c->remark != Py_None) {
        if (!buf_lit(b, ",\"remark\":") || (s = utf8_of(c->remark, &n)) == NULL
            || !buf_json_str(b, s, n))
            return 0;
    }
    return buf_lit(b, ",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":") && buf_int(b, c->version)
           && buf_lit(b, "}");
}

/* encode_binary_header; 0 to fall back. */
static int
binary_header(Buf *b, const Cmd *c)
{
    long long lang;
    PyObject *codes = bound[B_LANGUAGE_CODES];
    if (codes == NULL || !PyDict_CheckExact(codes))
        return 0;
    PyObject *l = PyDict_GetItemWithError(codes, c->language);
    if (l == NULL) {
        if (PyErr_Occurred())
            PyErr_Clear();
        l = PyDict_GetItemString(codes, "OTHER");
    }
    Py_ssize_t remark_len = 0;
    const char *remark = "";
    if (c->remark != Py_None && PyUnicode_GET_LENGTH(c->remark) > 0
        && (remark = utf8_of(c->remark, &remark_len)) == NULL)
        return 0;
    if (!int_in(l, -128, 127, &lang) || c->code < -32768 || c->code > 32767 || c->version < -32768
        || c->version > 32767 || c->opaque < -2147483648LL || c->opaque > 2147483647LL
        || c->flag < -2147483648LL || c->flag > 2147483647LL || remark_len > 2147483647LL)
        return 0;
    if (!buf_reserve(b, 22 + remark_len))
        return 0;
    unsigned char *o = b->p + b->len;
    wr16(o, (uint16_t)c->code); o[2] = (unsigned char)lang; wr16(o + 3, (uint16_t)c->version);
    wr32(o + 5, (uint32_t)c->opaque); wr32(o + 9, (uint32_t)c->flag);
    wr32(o + 13, (uint32_t)remark_len);
    memcpy(o + 17, remark, remark_len);
    Py_ssize_t ext_at = b->len + 17 + remark_len;
    b->len = ext_at + 4;
    if (c->ext != Py_None) {
        Py_ssize_t i = 0;
        PyObject *k, *v;
        while (PyDict_Next(c->ext, &i, &k, &v)) {
            Py_ssize_t kn, vn;
            const char *ks = utf8_of(k, &kn), *vs = utf8_of(v, &vn);
            if (ks == NULL || vs == NULL || kn > 32767 || vn > 2147483647LL)
                return 0;
            if (kn == 0 || vn == 0)
                continue;  /* Java writes neither null nor empty strings */
            if (!buf_reserve(b, 6 + kn + vn))
                return 0;
            o = b->p + b->len;
            wr16(o, (uint16_t)kn); memcpy(o + 2, ks, kn);
            wr32(o + 2 + kn, (uint32_t)vn); memcpy(o + 6 + kn, vs, vn);
            b->len += 6 + kn + vn;
        }
    }
    Py_ssize_t ext_len = b->len - ext_at - 4;
    if (ext_len > 2147483647LL)
        return 0;
    wr32(b->p + ext_at, (uint32_t)ext_len);
    return 1;
}

/* encode(cmd, serialize_type=None): the whole frame, length prefix included. */
static PyObject *
encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1 || nargs > 2 || kwnames != NULL)
        return fallback(B_ENCODE, args, nargs, kwnames);
    PyObject *refs[8] = {0}, *st_obj = NULL, *out = NULL;
    int hard_error = 0;
    Cmd c;
    Buf b;
    buf_init(&b);
    long long st;
    if (nargs == 2 && args[1] != Py_None)
        st_obj = Py_NewRef(args[1]);
    else if ((st_obj = PyObject_GetAttr(args[0], s_serialize_type)) == NULL)
        PyErr_Clear();
    if (!int_in(st_obj, SERIALIZE_JSON, SERIALIZE_ROCKETMQ, &st) || !cmd_read(args[0], &c, refs))
        goto done;
    b.len = 8;  /* the prefix, written last */
    if (!(st == SERIALIZE_ROCKETMQ ? binary_header(&b, &c) : json_header(&b, &c)))
        goto done;
    Py_ssize_t hlen = b.len - 8, blen = PyBytes_GET_SIZE(c.body);
    if (hlen > 0xFFFFFF || 4 + hlen + blen > 2147483647LL)
        goto done;
    out = PyBytes_FromStringAndSize(NULL, b.len + blen);
    if (out == NULL) {
        hard_error = 1;
        goto done;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    wr32(b.p, (uint32_t)(4 + hlen + blen));
    wr32(b.p + 4, (uint32_t)(st << 24 | hlen));
    memcpy(o, b.p, b.len);
    memcpy(o + b.len, PyBytes_AS_STRING(c.body), blen);
done:
    buf_free(&b);
    Py_XDECREF(st_obj);
    for (int i = 0; i < 8; i++)
        Py_XDECREF(refs[i]);
    if (out != NULL || hard_error)
        return out;
    PyErr_Clear();
    return fallback(B_ENCODE, args, nargs, kwnames);
}

/* decode_binary_header of a well-formed header, `body` given: NULL with an exception set is
 * an error, NULL without one means "fall back". */
static PyObject *
binary_command(const unsigned char *d, Py_ssize_t n, PyObject *body)
{
    PyObject *langs = bound[B_LANGUAGES], *cmd_type = bound[B_REMOTING_COMMAND];
    if (n < 22 || langs == NULL || cmd_type == NULL || !PyTuple_CheckExact(langs))
        return NULL;
    int16_t code = rd16(d), version = rd16(d + 3);
    int8_t language = (int8_t)d[2];
    int32_t opaque = rd32(d + 5), flag = rd32(d + 9), remark_len = rd32(d + 13);
    Py_ssize_t pos = 17;
    if (remark_len < 0 || pos + remark_len + 4 > n)
        return NULL;
    int32_t ext_len = rd32(d + pos + remark_len);
    if (ext_len < 0 || pos + remark_len + 4 + ext_len != n)
        return NULL;
    PyObject *items[9] = {0};
    PyObject *result = NULL;
    items[3] = remark_len ? PyUnicode_DecodeUTF8((const char *)d + pos, remark_len, "strict")
                          : Py_NewRef(Py_None);
    if (items[3] == NULL)
        goto refuse;
    pos += remark_len + 4;
    items[4] = ext_len ? PyDict_New() : Py_NewRef(Py_None);
    if (items[4] == NULL)
        goto error;
    while (pos < n) {
        if (pos + 2 > n)
            goto refuse;
        int16_t klen = rd16(d + pos);
        pos += 2;
        if (klen < 0 || pos + klen + 4 > n)
            goto refuse;
        Py_ssize_t kat = pos;
        pos += klen;
        int32_t vlen = rd32(d + pos);
        pos += 4;
        if (vlen < 0 || pos + vlen > n)
            goto refuse;
        PyObject *key = PyUnicode_DecodeUTF8((const char *)d + kat, klen, "strict");
        if (key == NULL)
            goto refuse;
        PyObject *value = PyUnicode_DecodeUTF8((const char *)d + pos, vlen, "strict");
        if (value == NULL) {
            Py_DECREF(key);
            goto refuse;
        }
        int rc = PyDict_SetItem(items[4], key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto error;
        pos += vlen;
    }
    items[0] = PyLong_FromLong(code);
    items[1] = PyLong_FromLong(opaque);
    items[2] = PyLong_FromLong(flag);
    items[5] = Py_NewRef(body);
    items[6] = 0 <= language && language < PyTuple_GET_SIZE(langs)
                   ? Py_NewRef(PyTuple_GET_ITEM(langs, language)) : PyUnicode_FromString("OTHER");
    items[7] = PyLong_FromLong(version);
    items[8] = PyLong_FromLong(SERIALIZE_ROCKETMQ);
    for (int i = 0; i < 9; i++)
        if (items[i] == NULL)
            goto error;
    result = PyObject_Vectorcall(cmd_type, items, 9, NULL);
    goto error;  /* the result or its error, and the items released */
refuse:
    PyErr_Clear();
error:
    for (int i = 0; i < 9; i++)
        Py_XDECREF(items[i]);
    return result;
}

/* decode_frame of a frame without its length prefix: NULL with an exception set is an
 * error, NULL without one means "fall back". */
static PyObject *
frame_command(const unsigned char *d, Py_ssize_t n)
{
    if (n < 4)
        return NULL;
    int32_t word = rd32(d);
    int st = (word >> 24) & 0xFF;
    Py_ssize_t hlen = word & 0xFFFFFF;
    if (hlen > n - 4 || (st != SERIALIZE_JSON && st != SERIALIZE_ROCKETMQ))
        return NULL;
    PyObject *body = PyBytes_FromStringAndSize((const char *)d + 4 + hlen, n - 4 - hlen);
    if (body == NULL)
        return NULL;
    PyObject *cmd;
    if (st == SERIALIZE_ROCKETMQ) {
        cmd = binary_command(d + 4, hlen, body);
    } else if (bound[B_DECODE_JSON_HEADER] == NULL) {
        cmd = NULL;
    } else {
        PyObject *header = PyBytes_FromStringAndSize((const char *)d + 4, hlen);
        cmd = header ? PyObject_Vectorcall(bound[B_DECODE_JSON_HEADER], &header, 1, NULL) : NULL;
        Py_XDECREF(header);
        if (cmd != NULL && PyObject_SetAttr(cmd, s_body, body) < 0)
            Py_CLEAR(cmd);
    }
    Py_DECREF(body);
    return cmd;
}

static PyObject *
decode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    if (nargs != 1 || PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return fallback(B_DECODE_FRAME, args, nargs, NULL);
    }
    PyObject *cmd = frame_command(view.buf, view.len);
    PyBuffer_Release(&view);
    if (cmd == NULL && !PyErr_Occurred())
        return fallback(B_DECODE_FRAME, args, nargs, NULL);
    return cmd;
}

/* decode_frames(buf, max_frame, pos=0) -> (commands, position after the last whole frame). */
static PyObject *
decode_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long max_frame, pos = 0;
    Py_buffer view;
    if (nargs < 2 || nargs > 3 || !int_in(args[1], I64, &max_frame)
        || (nargs == 3 && !int_in(args[2], 0, PY_SSIZE_T_MAX, &pos))
        || PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return fallback(B_DECODE_FRAMES, args, nargs, NULL);
    }
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len;
    PyObject *out = PyList_New(0);
    int stopped = 0;  /* at an anomaly the pure original goes on from `pos` */
    while (out != NULL && n - pos >= 4) {
        long long total = rd32(d + pos);
        if (total < 4 || total + 4 > max_frame) {
            stopped = 1;
            break;
        }
        if (n - pos - 4 < total)
            break;
        PyObject *cmd = frame_command(d + pos + 4, (Py_ssize_t)total);
        if (cmd == NULL) {
            if (PyErr_Occurred())
                Py_CLEAR(out);
            else
                stopped = 1;
            break;
        }
        int rc = PyList_Append(out, cmd);
        Py_DECREF(cmd);
        if (rc < 0)
            Py_CLEAR(out);
        pos += 4 + total;
    }
    PyBuffer_Release(&view);
    if (out == NULL)
        return NULL;
    if (stopped) {
        PyObject *rest_args[3] = {args[0], args[1], PyLong_FromLongLong(pos)};
        PyObject *rest = rest_args[2] ? fallback(B_DECODE_FRAMES, rest_args, 3, NULL) : NULL;
        Py_XDECREF(rest_args[2]);
        if (rest == NULL || !PyTuple_CheckExact(rest) || PyTuple_GET_SIZE(rest) != 2) {
            Py_DECREF(out);
            return rest;
        }
        Py_ssize_t at = PyList_GET_SIZE(out);
        int rc = PyList_SetSlice(out, at, at, PyTuple_GET_ITEM(rest, 0));
        PyObject *end = Py_NewRef(PyTuple_GET_ITEM(rest, 1));
        Py_DECREF(rest);
        if (rc < 0) {
            Py_DECREF(out);
            Py_DECREF(end);
            return NULL;
        }
        return Py_BuildValue("(NN)", out, end);
    }
    return Py_BuildValue("(NL)", out, pos);
}

/* -- the module ------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, "bind(name, obj): a pure-Python original or a helper object."},
    {"java_hash", (PyCFunction)(void (*)(void))java_hash, METH_FASTCALL, NULL},
    {"decode_properties", (PyCFunction)(void (*)(void))decode_properties, METH_FASTCALL, NULL},
    {"decode_batch", (PyCFunction)(void (*)(void))decode_batch, METH_FASTCALL, NULL},
    {"encode_record", (PyCFunction)(void (*)(void))encode_record, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"encode_messages", (PyCFunction)(void (*)(void))encode_messages, METH_FASTCALL, NULL},
    {"stamp_records", (PyCFunction)(void (*)(void))stamp_records, METH_FASTCALL, NULL},
    {"index_put", (PyCFunction)(void (*)(void))index_put, METH_FASTCALL, NULL},
    {"offset_msg_ids", (PyCFunction)(void (*)(void))offset_msg_ids, METH_FASTCALL, NULL},
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"decode_frame", (PyCFunction)(void (*)(void))decode_frame, METH_FASTCALL, NULL},
    {"decode_frames", (PyCFunction)(void (*)(void))decode_frames, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rmqnode._speedups",
    "Compiled twins of rmqnode's byte-level hot functions (see rmqnode/speedups.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_code, "code"}, {&s_opaque, "opaque"}, {&s_flag, "flag"}, {&s_remark, "remark"},
        {&s_ext_fields, "ext_fields"}, {&s_body, "body"}, {&s_language, "language"},
        {&s_version, "version"}, {&s_serialize_type, "serialize_type"},
        {&s_topic, "topic"}, {&s_queue_id, "queue_id"}, {&s_sys_flag, "sys_flag"},
        {&s_born_timestamp, "born_timestamp"}, {&s_born_host, "born_host"},
        {&s_reconsume_times, "reconsume_times"},
        {&s_prepared_transaction_offset, "prepared_transaction_offset"},
        {&s_properties, "properties"}, {&s_properties_string, "properties_string"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return NULL;
    return PyModule_Create(&module);
}
