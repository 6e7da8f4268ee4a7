/* message.py's twins: java_hash, decode_properties, decode_batch, offset_msg_ids. */
#include "speedups.h"

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

PyObject *
decode_properties(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyUnicode_CheckExact(args[0]))
        return fallback(B_DECODE_PROPERTIES, args, nargs, NULL);
    PyObject *props = PyDict_New();
    if (props != NULL && !properties_into(props, args[0]))
        Py_CLEAR(props);
    return props;
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
