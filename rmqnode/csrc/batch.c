/* A batch send's records written straight from its body, for handle_send (put.c): what
 * SendProcessor.handle's batch path does with a store.Message per entry (batch_messages, then
 * encode_messages and batch_dispatch reading the messages back), done in one pass over the
 * entries where they lie in the body. A batch of 32 spent 460 of its 1,180 ns per message in
 * process making and reading those messages, their properties dicts, bodies and properties
 * strings (timeit of the three calls; the whole send in process, benchmarks/bench_broker.py).
 *
 * Each entry's properties are read as decode_properties reads them (split on \x02, each piece
 * at its first \x01, a piece with an empty name or value skipped, the last of a name winning)
 * for the five names the put needs: TAGS, KEYS and UNIQ_KEY for the reput, WAIT for the flush,
 * DELAY for a batch of one (the store parks a lone delayed message). The header's properties
 * (`shared`) win over an entry's, as batch_messages merges them; a record's properties are the
 * entry's bytes as the producer wrote them, then (after a \x02 if they lack one) the header's.
 * \x01, \x02 and the space never occur inside a multi-byte UTF-8 sequence, so the bytes are
 * split where the text would be.
 *
 * Whatever is out of the common case is the original's, nothing done: an entry decode_batch
 * refuses, properties that are not UTF-8, a tag UTF-16 cannot hold, a body past
 * maxMessageSize, properties past 32767 bytes, an empty batch, a batch of one with a DELAY. */
#include "speedups.h"

enum { P_TAGS, P_KEYS, P_UNIQ_KEY, P_WAIT, P_DELAY, P_COUNT };
static const char *const wanted[P_COUNT] = {"TAGS", "KEYS", "UNIQ_KEY", "WAIT", "DELAY"};
static PyObject *wanted_str[P_COUNT];  /* interned, for the header's dict */
static PyObject *s_lower, *s_false;

static int
names_ready(void)
{
    if (s_false != NULL)
        return 1;
    for (int k = 0; k < P_COUNT; k++)
        if (wanted_str[k] == NULL
            && (wanted_str[k] = PyUnicode_InternFromString(wanted[k])) == NULL)
            return 0;
    if ((s_lower = PyUnicode_InternFromString("lower")) == NULL)
        return 0;
    return (s_false = PyUnicode_InternFromString("false")) != NULL;
}

/* A property's value where it lies in the body; p NULL when the entry has none. */
typedef struct {
    const char *p;
    Py_ssize_t n;
} Span;

/* The value of each wanted name among the properties raw[0:n), as decode_properties would
 * keep it. */
static void
wanted_pieces(const char *raw, Py_ssize_t n, Span found[P_COUNT])
{
    const char *p = raw, *end = raw + n;
    for (int k = 0; k < P_COUNT; k++)
        found[k].p = NULL;
    for (;;) {
        const char *stop = memchr(p, 0x02, (size_t)(end - p));
        if (stop == NULL)
            stop = end;
        const char *sep = memchr(p, 0x01, (size_t)(stop - p));
        if (sep != NULL && sep > p && sep + 1 < stop) {
            size_t len = (size_t)(sep - p);
            for (int k = 0; k < P_COUNT; k++)
                if (strlen(wanted[k]) == len && memcmp(p, wanted[k], len) == 0) {
                    found[k].p = sep + 1;
                    found[k].n = stop - sep - 1;
                    break;
                }
        }
        if (stop == end)
            return;
        p = stop + 1;
    }
}

static int
ascii(const char *p, Py_ssize_t n)
{
    unsigned char any = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        any |= (unsigned char)p[i];
    return any < 0x80;
}

/* Whether p[0:n) is UTF-8 as decode_batch's strict decode takes it. */
static int
utf8_valid(const char *p, Py_ssize_t n)
{
    if (ascii(p, n))
        return 1;
    PyObject *text = PyUnicode_DecodeUTF8(p, n, "strict");
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(text);
    return 1;
}

/* The tag code of an entry's TAGS value (tags_code): String.hashCode, 0 without one. 0 (no
 * exception) for a value UTF-16 cannot hold, -1 an error, 1 done. */
static int
tag_code(Span s, uint32_t *h)
{
    *h = 0;
    if (s.p == NULL)
        return 1;
    if (ascii(s.p, s.n)) {
        for (Py_ssize_t i = 0; i < s.n; i++)
            *h = 31 * *h + (unsigned char)s.p[i];
        return 1;
    }
    PyObject *text = PyUnicode_DecodeUTF8(s.p, s.n, "strict");
    if (text == NULL)
        return -1;
    int ok = hash_more(text, h);
    Py_DECREF(text);
    return ok;
}

/* index_keys of one entry appended to `keys`: its UNIQ_KEY, then every word of KEYS, the
 * header's where it has them (`shared_keys` its KEYS' words already). 0, or -1 with the error
 * raised. */
static int
entry_keys(PyObject *keys, PyObject *shared_uniq, PyObject *shared_keys, const Span *found)
{
    if (shared_uniq != NULL) {
        if (PyUnicode_GET_LENGTH(shared_uniq) && PyList_Append(keys, shared_uniq) < 0)
            return -1;
    } else if (found[P_UNIQ_KEY].p != NULL) {
        PyObject *uniq = PyUnicode_DecodeUTF8(found[P_UNIQ_KEY].p, found[P_UNIQ_KEY].n, NULL);
        int rc = uniq != NULL ? PyList_Append(keys, uniq) : -1;
        Py_XDECREF(uniq);
        if (rc < 0)
            return -1;
    }
    if (shared_keys != NULL) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(shared_keys); i++)
            if (PyList_Append(keys, PyList_GET_ITEM(shared_keys, i)) < 0)
                return -1;
        return 0;
    }
    if (found[P_KEYS].p == NULL)
        return 0;
    PyObject *words = PyUnicode_DecodeUTF8(found[P_KEYS].p, found[P_KEYS].n, NULL);
    int rc = words != NULL ? words_into(keys, words) : -1;
    Py_XDECREF(words);
    return rc;
}

/* The header's KEYS as index words (words_into's), shared by every entry: a new list, NULL
 * with the error raised. */
static PyObject *
shared_words(PyObject *words)
{
    PyObject *out = PyList_New(0);
    if (out != NULL && words_into(out, words) < 0)
        Py_CLEAR(out);
    return out;
}

int
wait_store_ok(PyObject *wait)
{
    if (wait == NULL)
        return 1;
    if (!names_ready())
        return -1;
    PyObject *lower = PyObject_CallMethodNoArgs(wait, s_lower);
    if (lower == NULL)
        return -1;
    int same = PyObject_RichCompareBool(lower, s_false, Py_EQ);
    Py_DECREF(lower);
    return same < 0 ? -1 : !same;
}

/* Whether an entry's properties raw[0:n) take a \x02 before the header's (batch_messages:
 * unless they are empty or end with one). */
static inline int
glued(const char *raw, Py_ssize_t n)
{
    return n > 0 && raw[n - 1] != 0x02;
}

/* The header's value of a wanted name (borrowed; NULL when it has none); 0 when it is not
 * an exact str (the original's) or the lookup fails. */
static int
shared_value(PyObject *shared, int k, PyObject **v)
{
    *v = PyDict_GetItemWithError(shared, wanted_str[k]);
    if (*v == NULL)
        return !PyErr_Occurred();
    return PyUnicode_CheckExact(*v);
}

/* What batch_records made of the body, dropped. */
static void
body_made_clear(BatchPut *b)
{
    Py_CLEAR(b->records);
    Py_CLEAR(b->sizes);
    Py_CLEAR(b->codes);
    Py_CLEAR(b->keys);
    PyMem_Free(b->key_counts);
    b->key_counts = NULL;
}

/* Each entry's record written into b->records once all are read; see speedups.h. */
int
batch_records(BatchPut *b, PyObject *topic, long long queue_id, PyObject *store_host,
              long long max_body)
{
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(b->body);
    Py_ssize_t len = PyBytes_GET_SIZE(b->body), pos = 0, n = 0, tail_len;
    const char *tail = utf8_of(b->tail, &tail_len);
    PyObject *shared[P_COUNT], *words = NULL;
    Entry *entries = NULL;
    Span first_wait = {NULL, 0};
    uint32_t shared_code = 0;  /* the header's TAGS' code, every entry's when it has one */
    int rc = 0;
    if (!names_ready() || tail == NULL || !PyBytes_CheckExact(store_host))
        goto done;
    for (int k = 0; k < P_COUNT; k++)
        if (!shared_value(b->shared, k, &shared[k]))
            goto done;
    if ((shared[P_KEYS] != NULL && (words = shared_words(shared[P_KEYS])) == NULL)
        || (shared[P_TAGS] != NULL && !hash_more(shared[P_TAGS], &shared_code)))
        goto done;
    /* the entries counted, then read into one array */
    for (Entry e; pos < len; n++)
        if (!next_entry(d, len, &pos, &e))
            goto done;
    if (n == 0 || (entries = PyMem_Malloc((size_t)n * sizeof(Entry))) == NULL
        || (b->key_counts = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t))) == NULL
        || (b->sizes = PyList_New(n)) == NULL || (b->codes = PyList_New(n)) == NULL
        || (b->keys = PyList_New(0)) == NULL)
        goto done;
    Rec r = {.queue_id = queue_id, .sys_flag = b->sys_flag, .born_ts = b->born,
             .reconsume = b->reconsume, .store = PyBytes_AS_STRING(store_host),
             .store_len = PyBytes_GET_SIZE(store_host), .born = PyBytes_AS_STRING(b->host),
             .born_len = PyBytes_GET_SIZE(b->host)};
    if ((r.topic = utf8_of(topic, &r.topic_len)) == NULL)
        goto done;
    long long total = 0;
    pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Entry *e = &entries[i];
        next_entry(d, len, &pos, e);
        const char *raw = (const char *)d + e->props_start;
        Span found[P_COUNT];
        uint32_t h;
        if (e->body_len > max_body || !utf8_valid(raw, e->props_len))
            goto done;
        wanted_pieces(raw, e->props_len, found);
        if (i == 0) {
            first_wait = found[P_WAIT];
            if (n == 1 && found[P_DELAY].p != NULL)  /* the store parks it */
                goto done;
        }
        if (shared[P_TAGS] != NULL)
            h = shared_code;
        else if (tag_code(found[P_TAGS], &h) <= 0)
            goto done;
        Py_ssize_t keys_before = PyList_GET_SIZE(b->keys);
        r.body_len = e->body_len;
        r.props_len = e->props_len + glued(raw, e->props_len) + tail_len;
        long long size = rec_size(&r);
        if (size < 0)
            goto done;
        PyObject *code = PyLong_FromLong((long)(int32_t)h), *sized = PyLong_FromLongLong(size);
        if (code != NULL)
            PyList_SET_ITEM(b->codes, i, code);
        if (sized != NULL)
            PyList_SET_ITEM(b->sizes, i, sized);
        if (code == NULL || sized == NULL
            || entry_keys(b->keys, shared[P_UNIQ_KEY], words, found) < 0)
            goto done;
        b->key_counts[i] = PyList_GET_SIZE(b->keys) - keys_before;
        total += size;
    }
    int wait = 1;
    if (shared[P_WAIT] != NULL) {
        wait = wait_store_ok(shared[P_WAIT]);
    } else if (first_wait.p != NULL) {
        PyObject *text = PyUnicode_DecodeUTF8(first_wait.p, first_wait.n, NULL);
        wait = text != NULL ? wait_store_ok(text) : -1;
        Py_XDECREF(text);
    }
    if (wait < 0 || total > PY_SSIZE_T_MAX
        || (b->records = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total)) == NULL)
        goto done;
    b->wait = wait;
    b->n = n;
    unsigned char *o = (unsigned char *)PyByteArray_AS_STRING(b->records);
    for (Py_ssize_t i = 0; i < n; i++) {
        const Entry *e = &entries[i];
        const char *raw = (const char *)d + e->props_start;
        r.flag = e->flag;
        r.body = (const char *)d + e->body_start;
        r.body_len = e->body_len;
        r.props_len = e->props_len + glued(raw, e->props_len) + tail_len;
        r.crc = crc_raw((const unsigned char *)r.body, r.body_len);
        long long size = PyLong_AsLongLong(PyList_GET_ITEM(b->sizes, i));
        unsigned char *props = rec_head(o, &r, size);
        memcpy(props, raw, e->props_len);
        props += e->props_len;
        if (glued(raw, e->props_len))
            *props++ = 0x02;
        memcpy(props, tail, tail_len);
        o += size;
    }
    rc = 1;
done:
    Py_XDECREF(words);
    PyMem_Free(entries);
    if (!rc) {
        PyErr_Clear();  /* the original meets the same trouble and says it */
        body_made_clear(b);
    }
    return rc;
}

PyObject *
batch_key_offsets(const BatchPut *b, long long wrote)
{
    PyObject *out = PyList_New(PyList_GET_SIZE(b->keys));
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; out != NULL && i < b->n; i++) {
        if (b->key_counts[i]) {
            PyObject *at = PyLong_FromLongLong(wrote);
            if (at == NULL) {
                Py_CLEAR(out);
                break;
            }
            for (Py_ssize_t j = 0; j < b->key_counts[i]; j++)
                PyList_SET_ITEM(out, k++, Py_NewRef(at));
            Py_DECREF(at);
        }
        wrote += PyLong_AsLongLong(PyList_GET_ITEM(b->sizes, i));
    }
    return out;
}

void
batch_put_clear(BatchPut *b)
{
    Py_CLEAR(b->shared);
    Py_CLEAR(b->tail);
    body_made_clear(b);
}
