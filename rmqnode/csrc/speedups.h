/* What the accelerator's C files share (rmqnode/speedups.py binds the module they make):
 * the pure-Python originals and helper objects bound at import, interned attribute names,
 * big-endian fields, exact-type argument checks and a growable byte buffer. */
#ifndef RMQNODE_SPEEDUPS_H
#define RMQNODE_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* What the files share stays inside the module: no symbol of theirs can interpose, or be
 * interposed by, one of the same name elsewhere in the process (only PyInit is exported). */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* -- bound Python objects (module.c) ---------------------------------------------------------- */

enum {
    B_JAVA_HASH, B_DECODE_PROPERTIES, B_DECODE_BATCH, B_ENCODE_RECORD, B_ENCODE,
    B_DECODE_FRAME, B_DECODE_FRAMES,
    B_BATCH_ENTRY, B_REMOTING_COMMAND, B_LANGUAGES, B_LANGUAGE_CODES, B_DECODE_JSON_HEADER,
    B_ENCODE_MESSAGES, B_PROPERTIES_STRING, B_STAMP_RECORDS, B_INDEX_PUT,
    B_OFFSET_MSG_IDS, B_PLACE_RECORDS, B_DISPATCH_REQUEST,
    B_INTEGER, B_INT32, B_BATCH_MESSAGES, B_BATCH_DISPATCH, B_QUEUE_ENTRIES,
    B_SENT_MESSAGE, B_MESSAGE, B_CLIENT_SYS_FLAGS, B_STORED_ANSWER, B_OUR_VERSION,
    B_DISPATCH_PLAIN, B_STORED_AT_ONCE, B_DELAY, B_SLAVE, B_END_FILE_MIN_BLANK_LENGTH,
    B_HANDLE_SEND, B_VALID_TOPICS, B_NOT_SENDABLE, B_V1, B_V2, B_RANDOM, B_PUT_RESULT,
    B_APPENDED, B_PUT_OK, B_INDEX_IN_LAST, B_DISPATCH_BATCH_CLASS, B_SERVE_READ, B_FRAME_ERROR,
    B_DEBUG_ON,
    B_COUNT
};

extern const char *const bound_names[B_COUNT];
extern PyObject *bound[B_COUNT];

/* Attribute names, interned at import. */
extern PyObject *s_code, *s_opaque, *s_flag, *s_remark, *s_ext_fields, *s_body, *s_language,
    *s_version, *s_serialize_type, *s_topic, *s_queue_id, *s_sys_flag, *s_born_timestamp,
    *s_born_host, *s_reconsume_times, *s_prepared_transaction_offset, *s_properties,
    *s_properties_string, *s_OTHER, *s_POP_CK, *s_PROPERTY_SEPARATOR, *s_CLUSTER, *s_WAIT,
    *s_JAVA, *s_popleft, *s_files, *s_file_from_offset, *s_file_size, *s_mm, *s_readonly,
    *s_wrote_position, *s_max_phy_end, *s_broker, *s_store, *s_config, *s_brokerRole,
    *s_maxMessageSize, *s_store_host, *s_commitlog, *s_zero_mark, *s_zero_ahead, *s_fd,
    *s_topic_queue_table,
    *s_delay_levels, *s_pending, *s_append, *s_last_store_timestamp, *s_reput_scheduled,
    *s_schedule_reput, *s_stats, *s_put, *s_brokerPermission, *s_ha, *s_may_wait, *s_topics,
    *s_table, *s_perm, *s_writeQueueNums, *s_readQueueNums, *s_topicName, *s_attrs,
    *s_brokerClusterName, *s_b, *s_e, *s_m, *s_TRAN_MSG, *s_answered, *s_index_count,
    *s_max_entries, *s_slots, *s_begin_timestamp, *s_end_phy_offset, *s_end_timestamp, *s_mf,
    *s_put_times, *s_put_bytes, *s_put_ms, *s_topic_put, *s_value, *s_times,
    *s_RETRY_PREFIX, *s_dispatch_of, *s_extend, *s_COMMA,
    *s__buf, *s_feed, *s_max_frame, *s__dispatch, *s__failed, *s__answer, *s__out, *s_dispatcher, *s_handlers, *s__on_response, *s__flush_out, *s_transport, *s_is_closing, *s_write, *s_last_active, *s_decoder, *s__bad_frame, *s_around_read, *s___enter__, *s___exit__, *s__receiving, *s_buffered_input, *s__track_input, *s_join;

/* The pure-Python original, called with the caller's own arguments. */
PyObject *fallback(int which, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

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
static inline int
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
/* An object's slot at `offset` (a borrowed reference, NULL when unset). */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* obj.name, its i-th field: read from its slot where `at` (fields_at's) says where, else by
 * name; a new reference, or NULL with the error raised. */
static inline PyObject *
field(PyObject *obj, const Py_ssize_t *at, int i, PyObject *name)
{
    if (at == NULL)
        return PyObject_GetAttr(obj, name);
    PyObject *v = SLOT(obj, at[i]);
    if (v == NULL)
        PyErr_SetObject(PyExc_AttributeError, name);
    return Py_XNewRef(v);
}
/* obj.name = v, its i-th field, as `field` reads it; 0, or -1 with the error raised. */
static inline int
set_field(PyObject *obj, const Py_ssize_t *at, int i, PyObject *name, PyObject *v)
{
    if (at == NULL)
        return PyObject_SetAttr(obj, name, v);
    Py_XSETREF(SLOT(obj, at[i]), Py_NewRef(v));
    return 0;
}
/* A field (as `field` reads it) as an exact int within [lo, hi] into *out; 0 (no exception)
 * otherwise. */
static inline int
int_field(PyObject *obj, const Py_ssize_t *at, int i, PyObject *name, long long lo,
          long long hi, long long *out)
{
    PyObject *v = field(obj, at, i, name);
    if (v == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = int_in(v, lo, hi, out);
    Py_DECREF(v);
    return ok;
}
/* getattr(obj, name) as an exact int within [lo, hi] into *out; 0 (no exception) otherwise. */
#define int_attr(obj, name, ...) int_field((obj), NULL, 0, (name), __VA_ARGS__)

/* A clock's time in nanoseconds (CLOCK_MONOTONIC: time.monotonic_ns's). */
static inline long long
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A field (as `set_field` sets it) = v, an int; 0, or -1 with the error raised. */
static inline int
set_int_field(PyObject *obj, const Py_ssize_t *at, int i, PyObject *name, long long v)
{
    PyObject *o = PyLong_FromLongLong(v);
    int rc = o != NULL ? set_field(obj, at, i, name, o) : -1;
    Py_XDECREF(o);
    return rc;
}
/* obj.name = v (an int); 0, or -1 with the error raised. */
#define set_int_attr(obj, name, v) set_int_field((obj), NULL, 0, (name), (v))

#define I16 -32768LL, 32767LL
#define I32 -2147483648LL, 2147483647LL
#define I64 LLONG_MIN, LLONG_MAX

/* UTF-8 of an exact str; NULL (and no exception) for anything else, lone surrogates included. */
static inline const char *
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

static inline void buf_init(Buf *b) { b->p = b->small; b->len = 0; b->cap = sizeof b->small; }
static inline void buf_free(Buf *b) { if (b->p != b->small) PyMem_Free(b->p); }

static inline int
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

static inline int
buf_put(Buf *b, const void *data, Py_ssize_t n)
{
    if (!buf_reserve(b, n))
        return 0;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 1;
}

#define buf_lit(b, s) buf_put((b), (s), (Py_ssize_t)sizeof(s) - 1)

/* `v` in decimal, as str(int) writes it, at the end of tmp: its start (snprintf, which this
 * replaces, cost an answer's encode a tenth of its time). */
static inline char *
decimal_text(char tmp[24], long long v)
{
    char *p = tmp + 24;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return p;
}

static inline int
buf_int(Buf *b, long long v)
{
    char tmp[24];
    char *p = decimal_text(tmp, v);
    return buf_put(b, p, tmp + 24 - p);
}


/* -- message.c ------------------------------------------------------------------------------- */

/* String.hashCode continued over `text`'s UTF-16 code units; 0 for a lone surrogate. */
int hash_more(PyObject *text, uint32_t *hash);
PyObject *java_hash(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *decode_properties(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *decode_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *batch_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* One entry of a batch body, as decode_batch reads it: its body's and its properties' place. */
typedef struct {
    Py_ssize_t body_start, body_len, props_start, props_len;
    int32_t flag;
} Entry;
/* The entry at d[*pos:n) into *e, *pos moved past it; 0 when it is not well formed (the
 * pure-Python original says how). */
int next_entry(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Entry *e);
/* What a batch send's put is made of (batch_head reads the header, batch.c's batch_records
 * the body; batch_put_clear drops what they hold). */
typedef struct {
    PyObject *body, *host;  /* the send's body and born host (borrowed) */
    PyObject *shared, *tail;  /* the header's properties with CLUSTER, and their string */
    long long sys_flag, born, reconsume;
    PyObject *records, *sizes, *codes, *keys;  /* the records; per entry: size, tag code */
    Py_ssize_t n, *key_counts;  /* entries; index keys per entry, in order in `keys` */
    int wait;  /* message.wait_store_ok of the first message (Java's isWaitStoreMsgOK) */
} BatchPut;
/* Whether handle would store the batch send of header h (fields named by n) to `topic` as it
 * is: 1 and the header's part of *b; 0 (no exception) for whatever handle refuses or reads
 * otherwise (a retry topic, a transaction's flag, a DELAY among the header's properties, header
 * fields the original reads itself). */
int batch_head(PyObject *h, PyObject *n, PyObject *topic, PyObject *body, PyObject *host,
               PyObject *cluster, BatchPut *b);
PyObject *sent_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* Whether `t` is a plain class of slots over object (a slots dataclass: object.__new__, generic
 * attribute access, no __dict__) whose writable object slots include `names` (n <= 63): their
 * offsets into at[], so that reading SLOT() is what getattr gives. */
int slots_of(PyTypeObject *t, const char *const *names, int n, Py_ssize_t *at);
PyObject *offset_msg_ids(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* A class of slots kept by slots_class: the last one that passed, its slots' offsets. */
#define SLOTS_MAX 16
typedef struct {
    PyObject *seen;
    Py_ssize_t at[SLOTS_MAX];
} SlotsClass;
int slots_class(SlotsClass *kept, PyObject *t, const char *const *names, int n, Py_ssize_t *at,
                int whole);
/* Where obj's n fields `names` are (at, filled) when its class is one slots_class takes (kept
 * in *kept) and sets attributes generically, so that reading and writing the slots is what
 * getattr and setattr do; NULL (read them by name) otherwise. */
const Py_ssize_t *fields_at(SlotsClass *kept, PyObject *obj, const char *const *names, int n,
                            Py_ssize_t *at);
/* net.codec.RemotingCommand's fields, in its constructor's order (frames.c's new_command
 * makes commands of them); command_kept is fields_at's, for the compiled read and send. */
enum { CMD_CODE, CMD_OPAQUE, CMD_FLAG, CMD_REMARK, CMD_EXT, CMD_BODY, CMD_LANGUAGE,
       CMD_VERSION, CMD_SERIALIZE, CMD_COUNT };
extern const char *const command_fields[CMD_COUNT];
extern SlotsClass command_kept;
/* store.Message's fields, all of them, in its constructor's order (message.c's sent_message
 * makes messages of them); message_kept is fields_at's and slots_class's for the compiled
 * put, which reads them from their slots. */
enum { M_TOPIC, M_QUEUE_ID, M_BODY, M_PROPERTIES, M_FLAG, M_SYS_FLAG, M_BORN_TS, M_BORN_HOST,
       M_RECONSUME, M_PREPARED, M_PROPERTIES_STRING, M_COUNT };
extern const char *const message_fields[M_COUNT];
extern SlotsClass message_kept;
/* storage.mapped_file.MappedFile's fields the compiled paths read and write on every put and
 * dispatch, from their slots (fields_at; by name, each is a lookup in the class's dict and a
 * descriptor call). Its `fd` property gives `_fd`. */
enum { MF_FILE_SIZE, MF_WROTE, MF_ZERO_MARK, MF_FROM, MF_FD, MF_READONLY, MF_MM, MF_COUNT };
extern const char *const mapped_file_fields[MF_COUNT];
extern SlotsClass mapped_file_kept;
PyObject *new_of_slots(PyObject *t, const Py_ssize_t *at, int n, PyObject *const *v);
PyObject *construct(SlotsClass *kept, PyObject *t, const char *const *names, int n,
                    PyObject *const *v);
/* A RemotingCommand of its nine fields in order (frames.c): made slot by slot where the
 * class allows, else by calling it. */
PyObject *new_command(PyObject *t, PyObject *const items[CMD_COUNT]);

/* -- records.c ------------------------------------------------------------------------------- */

/* One record's fields, as encode_record writes them. */
typedef struct {
    long long queue_id, flag, sys_flag, born_ts, store_ts, reconsume, prepared, qoff, phys, crc;
    const char *born, *store, *body, *topic, *props;
    Py_ssize_t born_len, store_len, body_len, topic_len, props_len;
} Rec;
/* The record's size, its sysFlag's host bits set from the hosts; -1 for anything but a
 * v1-magic record (topic up to 127 bytes) with hosts of 8 or 20 bytes and properties that fit. */
long long rec_size(Rec *r);
/* The record of `size` bytes at o, up to its properties' length: where its properties go. */
unsigned char *rec_head(unsigned char *o, const Rec *r, long long size);
/* UtilAll.crc32 (zlib's, masked to a non-negative int) of p[0:n). */
long long crc_raw(const unsigned char *p, Py_ssize_t n);

PyObject *encode_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames);
PyObject *encode_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* stamp_records's patching of d[0:len): 0 (nothing written) when a record's place is odd. */
int stamp_buffer(unsigned char *d, Py_ssize_t len, PyObject *sizes, long long qoff, long long phys,
                 long long ts);
PyObject *stamp_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *index_put(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *index_in_last(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int index_last_write(PyObject *files, PyObject *topic, PyObject *keys, PyObject *offsets,
                     PyObject *stamp);

/* -- batch.c -------------------------------------------------------------------------------- */

/* b's records, sizes, tag codes, index keys and WAIT from its body: 1; 0 (no exception,
 * nothing held) when the original must put the batch. */
int batch_records(BatchPut *b, PyObject *topic, long long queue_id, PyObject *store_host,
                  long long max_body);
/* The CommitLog offset of each of b's index keys, its records stored from `wrote`. */
PyObject *batch_key_offsets(const BatchPut *b, long long wrote);
void batch_put_clear(BatchPut *b);
/* Whether a WAIT property (NULL: none) lets the producer wait for the store: 1, 0, -1 an error. */
int wait_store_ok(PyObject *wait);

/* -- append.c ------------------------------------------------------------------------------- */

PyObject *place_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* -- dispatch.c ----------------------------------------------------------------------------- */

/* index_keys' words of a KEYS value (NULL: none) appended to `keys`: split on spaces, the
 * empty ones dropped. 0, or -1 with the error raised. */
int words_into(PyObject *keys, PyObject *words);
/* A single put's DispatchRequest fields as the tuple the reput takes (reput.c's dispatch_one
 * reads it back): the one place that knows their order. NULL with the error raised. */
PyObject *request_tuple(PyObject *topic, PyObject *queue_id, PyObject *offset, PyObject *size,
                        PyObject *tags_code, PyObject *stamp, PyObject *queue_offset,
                        PyObject *keys, PyObject *sys_flag);
PyObject *dispatch_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *batch_dispatch(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *queue_entries(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* -- reput.c -------------------------------------------------------------------------------- */

PyObject *dispatch_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* -- put.c --------------------------------------------------------------------------------- */

PyObject *stored_at_once(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *handle_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *serve_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *instancemethod(PyObject *self, PyObject *func);

/* -- send.c -------------------------------------------------------------------------------- */

PyObject *properties_string(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames);
PyObject *integer(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
PyObject *int32(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
/* A str of an optional sign and 1 to 19 ASCII digits that fits an int64, into *out; 0 for
 * anything else. */
int decimal_of(PyObject *value, long long *out);

/* -- json.c ---------------------------------------------------------------------------------- */

/* decode_json_header of a header in the common shape, `body` given: NULL with an exception set
 * is an error, NULL without one means "hand it to the pure-Python original". */
PyObject *json_command(const unsigned char *d, Py_ssize_t n, PyObject *body);
PyObject *decode_json_header(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* -- frames.c -------------------------------------------------------------------------------- */

PyObject *encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
PyObject *stored_answer(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *decode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *decode_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
