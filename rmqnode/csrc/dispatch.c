/* What the reput needs of a single put (storage/dispatch.py's dispatch_request): the tag code
 * and the index keys read from the message's properties in one call, the request built as the
 * plain tuple the put queues. */
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
    if (words != NULL && PyUnicode_GET_LENGTH(words)) {
        PyObject *split = PyUnicode_Split(words, s_space, -1);
        if (split == NULL)
            goto failed;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(split); i++) {
            PyObject *word = PyList_GET_ITEM(split, i);
            if (PyUnicode_GET_LENGTH(word) && PyList_Append(keys, word) < 0) {
                Py_DECREF(split);
                goto failed;
            }
        }
        Py_DECREF(split);
    }
    return keys;
failed:
    PyErr_Clear();
    Py_XDECREF(keys);
    return NULL;
}

/* dispatch_request(topic, queue_id, commit_log_offset, size, properties, store_timestamp,
 * queue_offset, sys_flag, delay_levels) -> the DispatchRequest's fields as a tuple. A delayed
 * message's topic (its tag slot holds its due time), properties that are not a dict of str
 * where it matters, or a tag that UTF-16 cannot hold go to the original. */
PyObject *
dispatch_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *tags, *keys, *code;
    uint32_t h = 0;
    if (nargs != 9 || !PyUnicode_CheckExact(args[0]) || !PyDict_CheckExact(args[4])
        || !names_ready())
        return fallback(B_DISPATCH_REQUEST, args, nargs, NULL);
    int schedule = PyUnicode_Compare(args[0], s_SCHEDULE_TOPIC);
    if (schedule == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (schedule == 0 || !str_property(args[4], s_TAGS, &tags)
        || (tags != NULL && !hash_more(tags, &h)))
        return fallback(B_DISPATCH_REQUEST, args, nargs, NULL);
    if ((keys = keys_of(args[4])) == NULL)
        return fallback(B_DISPATCH_REQUEST, args, nargs, NULL);
    if ((code = PyLong_FromLong((long)(int32_t)h)) == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    PyObject *out = PyTuple_New(9);
    if (out == NULL) {
        Py_DECREF(keys);
        Py_DECREF(code);
        return NULL;
    }
    PyObject *items[9] = {args[0], args[1], args[2], args[3], code, args[5], args[6], keys,
                          args[7]};
    for (int i = 0; i < 9; i++) {
        if (i != 4 && i != 7)
            Py_INCREF(items[i]);
        PyTuple_SET_ITEM(out, i, items[i]);
    }
    return out;
}
