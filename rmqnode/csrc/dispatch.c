/* What the reput needs of a put (storage/dispatch.py's dispatch_request and batch_dispatch):
 * the tag codes and the index keys read from the messages' properties in one call, and a
 * batch's queue entries packed at once (queue_entries). */
#include "speedups.h"

static PyObject *s_TAGS, *s_UNIQ_KEY, *s_KEYS, *s_SCHEDULE_TOPIC, *s_space;

static int
names_ready(void)
{
    if (s_space != NULL)
        return 1;
    s_TAGS = PyUnicode_InternFromString("TAGS");
    s_UNIQ_KEY = PyUnicode_InternFromString("UNIQ_KEY");
    s_KEYS = PyUnicode_InternFromString("KEYS");
    s_SCHEDULE_TOPIC = PyUnicode_InternFromString("SCHEDULE_TOPIC_XXXX");
    s_space = PyUnicode_InternFromString(" ");
    if (s_TAGS && s_UNIQ_KEY && s_KEYS && s_SCHEDULE_TOPIC && s_space)
        return 1;
    PyErr_Clear();
    Py_CLEAR(s_space);
    return 0;
}

/* properties[name] when it is an exact str (*out NULL when absent); 0 when it is something
 * else or the lookup fails, for the original to deal with. */
static int
str_property(PyObject *props, PyObject *name, PyObject **out)
{
    PyObject *v = PyDict_GetItemWithError(props, name);
    if (v == NULL) {
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        *out = NULL;
        return 1;
    }
    *out = v;
    return PyUnicode_CheckExact(v);
}

int
words_into(PyObject *keys, PyObject *words)
{
    if (words == NULL || !PyUnicode_GET_LENGTH(words))
        return 0;
    if (!names_ready())
        return -1;
    PyObject *split = PyUnicode_Split(words, s_space, -1);
    if (split == NULL)
        return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(split); i++) {
        PyObject *word = PyList_GET_ITEM(split, i);
        if (PyUnicode_GET_LENGTH(word) && PyList_Append(keys, word) < 0)
            rc = -1;
    }
    Py_DECREF(split);
    return rc;
}

/* index_keys: the UNIQ_KEY, then every word of KEYS; NULL (no exception) to fall back. */
static PyObject *
keys_of(PyObject *props)
{
    PyObject *uniq, *words;
    if (!str_property(props, s_UNIQ_KEY, &uniq) || !str_property(props, s_KEYS, &words))
        return NULL;
    PyObject *keys = PyList_New(0);
    if (keys == NULL)
        goto failed;
    if (uniq != NULL && PyUnicode_GET_LENGTH(uniq) && PyList_Append(keys, uniq) < 0)
        goto failed;
    if (words_into(keys, words) < 0)
        goto failed;
    return keys;
failed:
    PyErr_Clear();
    Py_XDECREF(keys);
    return NULL;
}

/* Whether `topic` is the delay topic, whose tag slot holds a due time: the original's case. */
static int
delay_topic(PyObject *topic)
{
    int same = PyUnicode_Compare(topic, s_SCHEDULE_TOPIC);
    if (same == -1 && PyErr_Occurred())
        PyErr_Clear();
    return same == 0;
}

/* The message's tag code (Java's String.hashCode of TAGS, 0 without one) in *h; 0 when TAGS
 * is not a str UTF-16 can hold, for the original to deal with. */
static int
tag_hash(PyObject *props, uint32_t *h)
{
    PyObject *tags;
    *h = 0;
    return str_property(props, s_TAGS, &tags) && (tags == NULL || hash_more(tags, h));
}

PyObject *
request_tuple(PyObject *topic, PyObject *queue_id, PyObject *offset, PyObject *size,
              PyObject *tags_code, PyObject *stamp, PyObject *queue_offset, PyObject *keys,
              PyObject *sys_flag)
{
    return PyTuple_Pack(9, topic, queue_id, offset, size, tags_code, stamp, queue_offset, keys,
                        sys_flag);
}

/* dispatch_request(topic, queue_id, commit_log_offset, size, properties, store_timestamp,
 * queue_offset, sys_flag, delay_levels) -> the DispatchRequest's fields as a tuple. A delayed
 * message's topic (its tag slot holds its due time), properties that are not a dict of str
 * where it matters, or a tag that UTF-16 cannot hold go to the original. */
PyObject *
dispatch_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *keys, *code;
    uint32_t h;
    if (nargs != 9 || !PyUnicode_CheckExact(args[0]) || !PyDict_CheckExact(args[4])
        || !names_ready() || delay_topic(args[0]) || !tag_hash(args[4], &h))
        return fallback(B_DISPATCH_REQUEST, args, nargs, NULL);
    if ((keys = keys_of(args[4])) == NULL)
        return fallback(B_DISPATCH_REQUEST, args, nargs, NULL);
    code = PyLong_FromLong((long)(int32_t)h);
    PyObject *out = code != NULL ? request_tuple(args[0], args[1], args[2], args[3], code, args[5],
                                                 args[6], keys, args[7]) : NULL;
    Py_DECREF(keys);
    Py_XDECREF(code);
    return out;
}

/* batch_dispatch(topic, messages, commit_log_offset, sizes, store_timestamp, delay_levels) ->
 * (tags codes, index keys, their CommitLog offsets, the shared sysFlag or None): a batch put's
 * messages read in one pass. A delayed message's topic, a message whose properties are not a
 * dict of str where it matters or whose sysFlag is not an int, sizes that do not match the
 * messages or offsets past a long go to the original. */
PyObject *
batch_dispatch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long offset;
    if (nargs != 6 || !PyUnicode_CheckExact(args[0]) || !PyList_CheckExact(args[1])
        || !PyList_CheckExact(args[3]) || PyList_GET_SIZE(args[1]) == 0
        || PyList_GET_SIZE(args[1]) != PyList_GET_SIZE(args[3])
        || !int_in(args[2], I64, &offset) || !names_ready() || delay_topic(args[0]))
        return fallback(B_BATCH_DISPATCH, args, nargs, NULL);
    Py_ssize_t n = PyList_GET_SIZE(args[1]);
    PyObject *codes = PyList_New(n), *keys = PyList_New(0), *offsets = PyList_New(0);
    PyObject *first_flag = NULL, *props = NULL, *flag = NULL, *mkeys = NULL, *at = NULL;
    PyObject *out = NULL;
    int shared = 1, refused = 0;
    if (codes == NULL || keys == NULL || offsets == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(args[1], i);
        long long size;
        uint32_t h;
        if ((props = PyObject_GetAttr(m, s_properties)) == NULL
            || (flag = PyObject_GetAttr(m, s_sys_flag)) == NULL) {
            PyErr_Clear();
            goto odd;
        }
        if (!PyDict_CheckExact(props) || !PyLong_CheckExact(flag)
            || !tag_hash(props, &h)
            || (mkeys = keys_of(props)) == NULL
            || !int_in(PyList_GET_ITEM(args[3], i), I64, &size))
            goto odd;
        PyObject *code = PyLong_FromLong((long)(int32_t)h);
        if (code == NULL)
            goto done;
        PyList_SET_ITEM(codes, i, code);
        if (first_flag == NULL)
            first_flag = Py_NewRef(flag);
        else if (shared && PyObject_RichCompareBool(flag, first_flag, Py_EQ) != 1)
            shared = 0;  /* exact ints: the comparison cannot fail */
        Py_ssize_t nkeys = PyList_GET_SIZE(mkeys);
        if (nkeys) {
            if ((at = PyLong_FromLongLong(offset)) == NULL)
                goto done;
            for (Py_ssize_t k = 0; k < nkeys; k++)
                if (PyList_Append(keys, PyList_GET_ITEM(mkeys, k)) < 0
                    || PyList_Append(offsets, at) < 0)
                    goto done;
            Py_CLEAR(at);
        }
        Py_CLEAR(mkeys);
        Py_CLEAR(props);
        Py_CLEAR(flag);
        if (__builtin_add_overflow(offset, size, &offset))
            goto odd;
    }
    out = PyTuple_Pack(4, codes, keys, offsets, shared ? first_flag : Py_None);
    goto done;
odd:
    refused = 1;
done:  /* out, or NULL with the error raised, unless refused */
    Py_XDECREF(codes);
    Py_XDECREF(keys);
    Py_XDECREF(offsets);
    Py_XDECREF(first_flag);
    Py_XDECREF(props);
    Py_XDECREF(flag);
    Py_XDECREF(mkeys);
    Py_XDECREF(at);
    return refused ? fallback(B_BATCH_DISPATCH, args, nargs, NULL) : out;
}

/* queue_entries(phy_offset, sizes, tags_codes) -> the run's 20-byte consume-queue entries in
 * one bytearray (consumequeue.py). Anything that is not an exact int within the entry's field,
 * or lists of different lengths, go to the original. */
PyObject *
queue_entries(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long phy, size, tags;
    if (nargs != 3 || !int_in(args[0], I64, &phy) || !PyList_CheckExact(args[1])
        || !PyList_CheckExact(args[2]) || PyList_GET_SIZE(args[1]) != PyList_GET_SIZE(args[2]))
        return fallback(B_QUEUE_ENTRIES, args, nargs, NULL);
    Py_ssize_t n = PyList_GET_SIZE(args[1]);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * 20);
    if (out == NULL)
        return NULL;
    unsigned char *d = (unsigned char *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++, d += 20) {
        if (!int_in(PyList_GET_ITEM(args[1], i), I32, &size)
            || !int_in(PyList_GET_ITEM(args[2], i), I64, &tags)) {
            Py_DECREF(out);
            return fallback(B_QUEUE_ENTRIES, args, nargs, NULL);
        }
        wr64(d, (uint64_t)phy);
        wr32(d + 8, (uint32_t)size);
        wr64(d + 12, (uint64_t)tags);
        if (i + 1 < n && __builtin_add_overflow(phy, size, &phy)) {
            Py_DECREF(out);
            return fallback(B_QUEUE_ENTRIES, args, nargs, NULL);
        }
    }
    return out;
}
