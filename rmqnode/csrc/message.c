/* message.py's twins: java_hash, decode_properties, decode_batch, batch_messages,
 * offset_msg_ids; and broker/send.py's sent_message, which builds on decode_properties. */
#include "speedups.h"
#include "structmember.h"

int
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

PyObject *
java_hash(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t h = 0;
    if (nargs != 1 || !PyUnicode_CheckExact(args[0]) || !hash_more(args[0], &h))
        return fallback(B_JAVA_HASH, args, nargs, NULL);
    return PyLong_FromLong((long)(int32_t)h);
}

/* The property names every send carries or the store reads (message.py's), interned: the
 * same objects as the names in Python code, so a name is neither allocated nor hashed per
 * message and the store's lookups match it by identity. */
static const char *const known_names[] = {
    "TAGS", "KEYS", "UNIQ_KEY", "WAIT", "DELAY", "CLUSTER", "TRAN_MSG", "PGROUP", "MSG_REGION",
    "TRACE_ON", "REAL_TOPIC", "REAL_QID", "RETRY_TOPIC", "MAX_RECONSUME_TIMES",
    "RECONSUME_TIME", "ORIGIN_MESSAGE_ID", "__transactionId__"};
#define N_KNOWN (sizeof known_names / sizeof known_names[0])
static PyObject *known[N_KNOWN];
static size_t known_len[N_KNOWN];

/* text[start:end) as a str: a known name's interned object when it is one; NULL on error. */
static PyObject *
name_of(PyObject *text, Py_ssize_t start, Py_ssize_t end)
{
    if (PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND) {
        const char *at = (const char *)PyUnicode_1BYTE_DATA(text) + start;
        size_t len = (size_t)(end - start);
        for (size_t i = 0; i < N_KNOWN; i++) {
            if (known_len[i] != len || memcmp(at, known_names[i], len) != 0)
                continue;
            if (known[i] == NULL && (known[i] = PyUnicode_InternFromString(known_names[i])) == NULL)
                return NULL;
            return Py_NewRef(known[i]);
        }
    }
    return PyUnicode_Substring(text, start, end);
}

/* Java's string2messageProperties of text[0:n) into `props`: split on \x02, each piece at its
 * first \x01. */
static int
properties_into(PyObject *props, PyObject *text, Py_ssize_t n)
{
    if (known_len[0] == 0)
        for (size_t i = 0; i < N_KNOWN; i++)
            known_len[i] = strlen(known_names[i]);
    Py_ssize_t start = 0;
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
            PyObject *name = name_of(text, start, sep);
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

PyObject *
decode_properties(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyUnicode_CheckExact(args[0]))
        return fallback(B_DECODE_PROPERTIES, args, nargs, NULL);
    PyObject *props = PyDict_New();
    if (props != NULL && !properties_into(props, args[0], PyUnicode_GET_LENGTH(args[0])))
        Py_CLEAR(props);
    return props;
}

int
next_entry(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Entry *e)
{
    Py_ssize_t at = *pos;
    if (n - at < 20)
        return 0;
    int32_t total = rd32(d + at), body_len = rd32(d + at + 16);
    Py_ssize_t end = at + (Py_ssize_t)total;
    e->body_start = at + 20;
    if (total < 22 || end > n || body_len < 0 || e->body_start + body_len + 2 > end)
        return 0;
    int16_t props_len = rd16(d + e->body_start + body_len);
    e->props_start = e->body_start + body_len + 2;
    if (props_len < 0 || e->props_start + props_len != end)
        return 0;
    e->body_len = body_len;
    e->props_len = props_len;
    e->flag = rd32(d + at + 12);
    *pos = end;
    return 1;
}

/* The entry's properties as the producer wrote them; NULL (and no exception) unless UTF-8. */
static PyObject *
entry_text(const unsigned char *d, const Entry *e)
{
    PyObject *raw = PyUnicode_DecodeUTF8((const char *)d + e->props_start, e->props_len, "strict");
    if (raw == NULL)
        PyErr_Clear();
    return raw;
}

PyObject *
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
        Entry e;
        PyObject *raw;
        if (!next_entry(d, n, &pos, &e) || (raw = entry_text(d, &e)) == NULL)
            goto refuse;
        PyObject *items[4] = {
            PyBytes_FromStringAndSize((const char *)d + e.body_start, e.body_len), PyDict_New(),
            PyLong_FromLong(e.flag), raw};
        PyObject *entry = NULL;
        if (items[0] && items[1] && items[2] && properties_into(items[1], raw, PyUnicode_GET_LENGTH(raw)))
            entry = PyObject_Vectorcall(bound[B_BATCH_ENTRY], items, 4, NULL);
        for (int i = 0; i < 4; i++)
            Py_XDECREF(items[i]);
        if (entry == NULL || PyList_Append(out, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return out;
refuse:
    Py_DECREF(out);
    return fallback(B_DECODE_BATCH, args, nargs, NULL);
}

/* -- batch_messages: copies of a template message ------------------------------------------- */

enum { F_BODY, F_PROPERTIES, F_FLAG, F_PROPERTIES_STRING, F_COUNT };

int
slots_of(PyTypeObject *t, const char *const *names, int n, Py_ssize_t *at)
{
    if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE) || t->tp_base != &PyBaseObject_Type
        || t->tp_dictoffset != 0 || t->tp_itemsize != 0 || t->tp_new != PyBaseObject_Type.tp_new
        || t->tp_getattro != PyObject_GenericGetAttr || t->tp_members == NULL)
        return 0;
    long long found = 0;
    for (PyMemberDef *m = t->tp_members; m->name != NULL; m++) {
        if (m->type != T_OBJECT_EX || (m->flags & READONLY))
            return 0;
        for (int i = 0; i < n; i++)
            if (strcmp(m->name, names[i]) == 0) {
                at[i] = m->offset;
                found |= 1LL << i;
            }
    }
    return found == (1LL << n) - 1;
}

/* Whether copying `template` slot by slot gives what dataclasses.replace of it gives: its
 * class one slots_of takes, every slot set; the offsets of the slots batch_messages sets into
 * at[]. */
static int
copyable(PyObject *template, Py_ssize_t at[F_COUNT])
{
    static const char *const names[F_COUNT] = {"body", "properties", "flag", "properties_string"};
    PyTypeObject *t = Py_TYPE(template);
    if (!slots_of(t, names, F_COUNT, at))
        return 0;
    for (PyMemberDef *m = t->tp_members; m->name != NULL; m++)
        if (SLOT(template, m->offset) == NULL)
            return 0;
    return 1;
}

/* A copy of `template` (copyable) with the F_COUNT values of `v` (references stolen, all set)
 * in its slots at at[]. */
static PyObject *
copy_with(PyObject *template, const Py_ssize_t at[F_COUNT], PyObject *v[F_COUNT])
{
    PyTypeObject *t = Py_TYPE(template);
    PyObject *copy = t->tp_alloc(t, 0);
    if (copy != NULL) {
        for (PyMemberDef *m = t->tp_members; m->name != NULL; m++)
            SLOT(copy, m->offset) = Py_NewRef(SLOT(template, m->offset));
        for (int i = 0; i < F_COUNT; i++) {
            Py_SETREF(SLOT(copy, at[i]), v[i]);
            v[i] = NULL;
        }
    }
    for (int i = 0; i < F_COUNT; i++)
        Py_XDECREF(v[i]);
    return copy;
}

/* Whether `t` is a class slots_of takes for the n `names`, and (`whole`) one made whole by
 * setting them (it has no other member); their offsets into at[]. The last class that
 * passed is kept in *kept, with a reference (so that its address names no other): a class
 * is read once, not per object. */
int
slots_class(SlotsClass *kept, PyObject *t, const char *const *names, int n, Py_ssize_t *at,
            int whole)
{
    if (t == NULL || !PyType_Check(t) || n > SLOTS_MAX)
        return 0;
    if (t != kept->seen) {
        int members = 0;
        Py_ssize_t found[SLOTS_MAX];  /* kept stays the kept class's until this one is */
        if (!slots_of((PyTypeObject *)t, names, n, found))
            return 0;
        for (PyMemberDef *m = ((PyTypeObject *)t)->tp_members; m->name != NULL; m++)
            members++;
        if (whole && members != n)
            return 0;
        Py_XSETREF(kept->seen, Py_NewRef(t));
        memcpy(kept->at, found, n * sizeof *found);
    }
    memcpy(at, kept->at, n * sizeof *at);
    return 1;
}

const char *const mapped_file_fields[MF_COUNT] = {
    "file_size", "wrote_position", "zero_mark", "file_from_offset", "_fd", "readonly", "mm"};
SlotsClass mapped_file_kept;

const Py_ssize_t *
fields_at(SlotsClass *kept, PyObject *obj, const char *const *names, int n, Py_ssize_t *at)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (t->tp_setattro != PyObject_GenericSetAttr
        || !slots_class(kept, (PyObject *)t, names, n, at, 0))
        return NULL;
    return at;
}

/* A new object of `t` (slots_class, whole) with v[i] in the slot at at[i]: what calling the
 * class with them gives, without running its __init__. The references in v are new ones,
 * not taken. */
PyObject *
new_of_slots(PyObject *t, const Py_ssize_t *at, int n, PyObject *const *v)
{
    PyObject *obj = ((PyTypeObject *)t)->tp_alloc((PyTypeObject *)t, 0);
    if (obj != NULL)
        for (int i = 0; i < n; i++)
            SLOT(obj, at[i]) = Py_NewRef(v[i]);
    return obj;
}

/* An object of class `t` with the n values of v in the fields `names` (its only ones), as
 * calling t(*v) makes it: slot by slot where slots_class takes the class as whole (its
 * __init__ not run), else by that call. The references in v are not taken. */
PyObject *
construct(SlotsClass *kept, PyObject *t, const char *const *names, int n, PyObject *const *v)
{
    Py_ssize_t at[SLOTS_MAX];
    if (slots_class(kept, t, names, n, at, 1))
        return new_of_slots(t, at, n, v);
    return PyObject_Vectorcall(t, v, n, NULL);
}

/* An entry's properties string: its text (d[start:start+len), UTF-8), then `tail` after a
 * separator unless the text is empty or ends with one; in one allocation when both are ASCII.
 * *own: the length of the entry's part. NULL without an exception: not UTF-8. */
static PyObject *
joined_text(const unsigned char *d, const Entry *e, PyObject *tail, Py_ssize_t *own)
{
    const unsigned char *p = d + e->props_start;
    Py_ssize_t n = e->props_len;
    int ascii = PyUnicode_IS_ASCII(tail);
    for (Py_ssize_t i = 0; ascii && i < n; i++)
        ascii = p[i] < 0x80;
    if (ascii) {
        int glue = n && p[n - 1] != 0x02;
        Py_ssize_t tail_len = PyUnicode_GET_LENGTH(tail);
        PyObject *text = PyUnicode_New(n + glue + tail_len, 127);
        if (text != NULL) {
            Py_UCS1 *o = PyUnicode_1BYTE_DATA(text);
            memcpy(o, p, n);
            if (glue)  /* never into the terminating NUL (nor the shared empty str) */
                o[n] = 0x02;
            memcpy(o + n + glue, PyUnicode_1BYTE_DATA(tail), tail_len);
        }
        *own = text ? n : -1;  /* -1: an error, not a refusal */
        return text;
    }
    PyObject *raw = entry_text(d, e);
    if (raw == NULL)
        return NULL;
    *own = PyUnicode_GET_LENGTH(raw);
    PyObject *text = NULL;
    if (*own && PyUnicode_READ_CHAR(raw, *own - 1) != 0x02) {
        PyObject *glued = PyUnicode_Concat(s_PROPERTY_SEPARATOR, tail);
        text = glued ? PyUnicode_Concat(raw, glued) : NULL;
        Py_XDECREF(glued);
    } else {
        text = PyUnicode_Concat(raw, tail);
    }
    Py_DECREF(raw);
    if (text == NULL)
        *own = -1;  /* an error, not a refusal */
    return text;
}

/* batch_messages(data, template, shared, tail): the batch's messages, copies of `template`. */
PyObject *
batch_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t at[F_COUNT] = {0};
    if (nargs != 4 || !PyBytes_CheckExact(args[0]) || !PyDict_CheckExact(args[2])
        || !PyUnicode_CheckExact(args[3]) || !copyable(args[1], at))
        return fallback(B_BATCH_MESSAGES, args, nargs, NULL);
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]), pos = 0;
    PyObject *template = args[1], *shared = args[2], *tail = args[3];
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (pos < n) {
        Entry e;
        Py_ssize_t own = 0;
        PyObject *text = NULL;
        if (!next_entry(d, n, &pos, &e) || (text = joined_text(d, &e, tail, &own)) == NULL) {
            Py_DECREF(out);
            if (own < 0)
                return NULL;
            return fallback(B_BATCH_MESSAGES, args, nargs, NULL);
        }
        PyObject *v[F_COUNT] = {
            PyBytes_FromStringAndSize((const char *)d + e.body_start, e.body_len), PyDict_New(),
            PyLong_FromLong(e.flag), text};
        int ok = v[F_BODY] && v[F_PROPERTIES] && v[F_FLAG]
                 && properties_into(v[F_PROPERTIES], text, own)
                 && PyDict_Update(v[F_PROPERTIES], shared) == 0;
        int has_pop = ok ? PyDict_Contains(v[F_PROPERTIES], s_POP_CK) : 0;
        if (has_pop)
            ok = has_pop > 0 && PyDict_DelItem(v[F_PROPERTIES], s_POP_CK) == 0;
        PyObject *msg = NULL;
        if (ok)
            msg = copy_with(template, at, v);
        else
            for (int i = 0; i < F_COUNT; i++)
                Py_XDECREF(v[i]);
        if (msg == NULL || PyList_Append(out, msg) < 0) {
            Py_XDECREF(msg);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(msg);
    }
    return out;
}

/* -- sent_message: a send's one message, all of it ------------------------------------------ */

/* Where send.Names keeps the names of the fields read here. */
enum { N_SYS_FLAG = 5, N_BORN = 6, N_FLAG = 7, N_PROPERTIES = 8, N_RECONSUME = 9, N_COUNT = 14 };
const char *const message_fields[M_COUNT] = {
    [M_TOPIC] = "topic", [M_QUEUE_ID] = "queue_id", [M_BODY] = "body",
    [M_PROPERTIES] = "properties", [M_FLAG] = "flag", [M_SYS_FLAG] = "sys_flag",
    [M_BORN_TS] = "born_timestamp", [M_BORN_HOST] = "born_host",
    [M_RECONSUME] = "reconsume_times", [M_PREPARED] = "prepared_transaction_offset",
    [M_PROPERTIES_STRING] = "properties_string"};
SlotsClass message_kept;

/* Whether `t` is the message class sent_message builds (bound as "Message"), made whole by
 * setting M_COUNT slots, and their offsets into at[]. */
static int
message_class(PyObject *t, Py_ssize_t at[M_COUNT])
{
    static SlotsClass kept;  /* its own: a class it takes is one of these slots alone */
    return slots_class(&kept, t, message_fields, M_COUNT, at, 1);
}

/* An int32 field of header h, named n[i]: `absent` when it is not there (or None); 0 when it
 * is anything else than a decimal int32 (the original says what). */
static int
int32_field(PyObject *h, PyObject *n, int i, long long absent, long long *out)
{
    PyObject *v = PyDict_GetItemWithError(h, PyTuple_GET_ITEM(n, i));
    if (v == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (v == NULL || v == Py_None) {
        *out = absent;
        return 1;
    }
    return decimal_of(v, out) && -2147483648LL <= *out && *out <= 2147483647LL;
}

/* send._without_wait: the properties string of props without WAIT (NULL when there is no
 * WAIT: Py_None), WAIT put back last; NULL on error. */
static PyObject *
without_wait(PyObject *props)
{
    PyObject *wait = PyDict_GetItemWithError(props, s_WAIT);
    if (wait == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    Py_INCREF(wait);
    PyObject *stored = NULL;
    if (PyDict_DelItem(props, s_WAIT) == 0) {
        PyObject *args[2] = {props, PyLong_FromSsize_t(PyDict_GET_SIZE(props) + 1)};
        if (args[1] != NULL)
            stored = properties_string(NULL, args, 2, NULL);  /* send.c */
        Py_XDECREF(args[1]);
        if (stored != NULL && PyDict_SetItem(props, s_WAIT, wait) < 0)
            Py_CLEAR(stored);
    }
    Py_DECREF(wait);
    return stored;
}

/* What _header_fields reads of a send header h (its fields named by n): the sysFlag, masked
 * by CLIENT_SYS_FLAGS (`client`), the bornTimestamp and the reconsumeTimes, and the
 * properties' text in *text (NULL when there is none). 0 (no exception) when any of them is
 * the original's to read: an absent bornTimestamp (the original has a default of its own),
 * a field that is not a plain decimal, properties that are not text. */
static int
header_fields(PyObject *h, PyObject *n, long long client, long long *sys_flag, long long *born,
              long long *reconsume, PyObject **text)
{
    for (int i = N_SYS_FLAG; i <= N_RECONSUME; i++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(n, i)))
            return 0;
    PyObject *born_text = PyDict_GetItemWithError(h, PyTuple_GET_ITEM(n, N_BORN));
    *text = born_text ? PyDict_GetItemWithError(h, PyTuple_GET_ITEM(n, N_PROPERTIES)) : NULL;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (*text == Py_None)
        *text = NULL;  /* no properties, as an empty text */
    if (born_text == NULL || !decimal_of(born_text, born)
        || !int32_field(h, n, N_SYS_FLAG, 0, sys_flag)
        || !int32_field(h, n, N_RECONSUME, 0, reconsume)
        || (*text != NULL && !PyUnicode_CheckExact(*text)))
        return 0;
    *sys_flag &= client;
    return 1;
}

/* A store.Message made slot by slot (at[] from message_class); `props` and `stored` (its
 * properties_string) are taken, either NULL when making it failed. NULL with the error
 * raised. */
static PyObject *
new_message(Py_ssize_t at[M_COUNT], PyObject *topic, PyObject *queue_id, PyObject *body,
            PyObject *props, long long flag, long long sys_flag, long long born, PyObject *host,
            long long reconsume, PyObject *stored)
{
    PyObject *v[M_COUNT] = {
        [M_TOPIC] = Py_NewRef(topic), [M_QUEUE_ID] = Py_NewRef(queue_id),
        [M_BODY] = Py_NewRef(body), [M_PROPERTIES] = props, [M_FLAG] = PyLong_FromLongLong(flag),
        [M_SYS_FLAG] = PyLong_FromLongLong(sys_flag), [M_BORN_TS] = PyLong_FromLongLong(born),
        [M_BORN_HOST] = Py_NewRef(host), [M_RECONSUME] = PyLong_FromLongLong(reconsume),
        [M_PREPARED] = PyLong_FromLong(0), [M_PROPERTIES_STRING] = stored};
    PyObject *msg = NULL;
    int ok = 1;
    for (int i = 0; i < M_COUNT; i++)
        ok = ok && v[i] != NULL;
    if (ok)
        msg = new_of_slots(bound[B_MESSAGE], at, M_COUNT, v);
    for (int i = 0; i < M_COUNT; i++)
        Py_XDECREF(v[i]);
    return msg;
}

/* sent_message(h, n, topic, queue_id, body, host, cluster): the send's message. Header fields
 * that header_fields leaves to the original, or a flag that is not a plain decimal, are the
 * original's. */
PyObject *
sent_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t at[M_COUNT];
    long long client, sys_flag, born, reconsume, flag;
    PyObject *text;
    if (nargs != 7 || !PyDict_CheckExact(args[0]) || !PyTuple_Check(args[1])
        || PyTuple_GET_SIZE(args[1]) != N_COUNT || !PyUnicode_CheckExact(args[2])
        || !PyLong_CheckExact(args[3]) || !PyBytes_CheckExact(args[4])
        || !PyBytes_CheckExact(args[5]) || !PyUnicode_CheckExact(args[6])
        || !message_class(bound[B_MESSAGE], at) || !int_in(bound[B_CLIENT_SYS_FLAGS], I32, &client)
        || !header_fields(args[0], args[1], client, &sys_flag, &born, &reconsume, &text)
        || !int32_field(args[0], args[1], N_FLAG, 0, &flag))
        return fallback(B_SENT_MESSAGE, args, nargs, NULL);
    PyObject *props = PyDict_New();
    if (props == NULL)
        return NULL;
    int has_pop = 0;
    if ((text != NULL && !properties_into(props, text, PyUnicode_GET_LENGTH(text)))
        || PyDict_SetItem(props, s_CLUSTER, args[6]) < 0
        || (has_pop = PyDict_Contains(props, s_POP_CK)) < 0
        || (has_pop && PyDict_DelItem(props, s_POP_CK) < 0)) {
        Py_DECREF(props);
        return NULL;
    }
    return new_message(at, args[2], args[3], args[4], props, flag, sys_flag, born, args[5],
                       reconsume, without_wait(props));
}

/* The header's part of a batch send (SendProcessor.handle's batch path: header_message, and
 * the header's properties with CLUSTER as every entry's tail) into *b; see speedups.h. */
int
batch_head(PyObject *h, PyObject *n, PyObject *topic, PyObject *body, PyObject *host,
           PyObject *cluster, BatchPut *b)
{
    PyObject *text;
    long long client;
    memset(b, 0, sizeof *b);
    if (!PyDict_CheckExact(h) || !PyTuple_Check(n) || PyTuple_GET_SIZE(n) != N_COUNT
        || !PyUnicode_CheckExact(topic) || !PyBytes_CheckExact(body)
        || !PyBytes_CheckExact(host) || !PyUnicode_CheckExact(cluster) || bound[B_DELAY] == NULL
        || !int_in(bound[B_CLIENT_SYS_FLAGS], I32, &client)
        || PyUnicode_Tailmatch(topic, s_RETRY_PREFIX, 0, PY_SSIZE_T_MAX, -1) != 0
        || !header_fields(h, n, client, &b->sys_flag, &b->born, &b->reconsume, &text)
        || (b->sys_flag & 0xC) /* TRANSACTION_MASK */
        || (b->shared = PyDict_New()) == NULL
        || (text != NULL && !properties_into(b->shared, text, PyUnicode_GET_LENGTH(text)))
        || PyDict_Contains(b->shared, bound[B_DELAY]) != 0
        || PyDict_SetItem(b->shared, s_CLUSTER, cluster) < 0
        || (b->tail = properties_string(NULL, &b->shared, 1, NULL)) == NULL
        || !PyUnicode_CheckExact(b->tail)) {
        PyErr_Clear();
        batch_put_clear(b);
        return 0;
    }
    b->body = body;
    b->host = host;
    return 1;
}

/* offset_msg_ids(store_host, commit_log_offset, sizes) -> ids, each offset unsigned. */
PyObject *
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
