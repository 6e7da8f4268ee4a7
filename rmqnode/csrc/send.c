/* The send path's field work: javamap.properties_string (a message's properties in Java's
 * HashMap order, the text its record keeps) and validation.integer / int32 (the decimal header
 * fields). Whatever is unusual is the pure-Python original's, which words every refusal. */
#include "speedups.h"

/* -- properties_string ----------------------------------------------------------------------- */

#define LOAD_NUM 3  /* load factor 0.75 as 3/4 */
#define LOAD_DEN 4
#define INITIAL_CAPACITY 16
#define TREEIFY_THRESHOLD 8
#define MIN_TREEIFY_CAPACITY 64
#define PEAK_MAX (1 << 16)  /* more keys, or a larger `peak`, are the original's */

/* The largest number of `hashes` falling in one bucket of a `capacity`-slot table. */
static Py_ssize_t
fullest_bucket(const uint32_t *hashes, Py_ssize_t n, uint32_t capacity)
{
    Py_ssize_t counts[MIN_TREEIFY_CAPACITY] = {0}, most = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t c = ++counts[hashes[i] & (capacity - 1)];
        if (c > most)
            most = c;
    }
    return most;
}

/* javamap._capacity: doubled while the peak count passed 0.75 of it, and (below 64) while
 * one bucket holds more than eight keys. */
static uint32_t
table_capacity(const uint32_t *hashes, Py_ssize_t n, Py_ssize_t peak)
{
    uint32_t capacity = INITIAL_CAPACITY;
    while ((long long)peak * LOAD_DEN > (long long)capacity * LOAD_NUM)
        capacity *= 2;
    while (capacity < MIN_TREEIFY_CAPACITY && fullest_bucket(hashes, n, capacity) > TREEIFY_THRESHOLD)
        capacity *= 2;
    return capacity;
}

/* properties_string(props, peak=0): the keys bucket by bucket (in a bucket, in dict order),
 * each as name \x01 value, joined by \x02. */
PyObject *
properties_string(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    long long peak = 0;
    if (kwnames != NULL || nargs < 1 || nargs > 2 || !PyDict_CheckExact(args[0])
        || (nargs == 2 && !int_in(args[1], 0, PEAK_MAX, &peak)))
        return fallback(B_PROPERTIES_STRING, args, nargs, kwnames);
    PyObject *props = args[0];
    Py_ssize_t n = PyDict_GET_SIZE(props);
    if (n == 0)
        return PyUnicode_New(0, 0);
    if (n > PEAK_MAX)
        return fallback(B_PROPERTIES_STRING, args, nargs, kwnames);
    enum { SMALL = 32 };
    PyObject *keys_small[SMALL], *values_small[SMALL];
    uint32_t hashes_small[SMALL], order_small[SMALL];
    PyObject **keys = keys_small, **values = values_small;
    uint32_t *hashes = hashes_small, *order = order_small, *starts = NULL;
    PyObject *out = NULL;
    if (n > SMALL) {
        keys = PyMem_Malloc(n * sizeof *keys);
        values = PyMem_Malloc(n * sizeof *values);
        hashes = PyMem_Malloc(n * sizeof *hashes);
        order = PyMem_Malloc(n * sizeof *order);
        if (!keys || !values || !hashes || !order) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* Every key and value an exact str, every key hashable as UTF-16: else the original's. */
    Py_ssize_t pos = 0, i = 0, length = n - 1;
    Py_UCS4 maxchar = 0x7F;
    PyObject *k, *v;
    while (PyDict_Next(props, &pos, &k, &v)) {
        uint32_t h = 0;
        if (i >= n || !PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(v) || !hash_more(k, &h))
            goto fall;
        keys[i] = k;
        values[i] = v;
        hashes[i] = h ^ (h >> 16);
        length += PyUnicode_GET_LENGTH(k) + 1 + PyUnicode_GET_LENGTH(v);
        Py_UCS4 mk = PyUnicode_MAX_CHAR_VALUE(k), mv = PyUnicode_MAX_CHAR_VALUE(v);
        if (mk > maxchar)
            maxchar = mk;
        if (mv > maxchar)
            maxchar = mv;
        i++;
    }
    if (i != n)
        goto fall;
    uint32_t capacity = table_capacity(hashes, n, peak > n ? (Py_ssize_t)peak : n);
    /* A stable counting sort by bucket: the table's iteration order. */
    starts = PyMem_Calloc((size_t)capacity + 1, sizeof *starts);
    if (starts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++)
        starts[(hashes[i] & (capacity - 1)) + 1]++;
    for (uint32_t b = 0; b < capacity; b++)
        starts[b + 1] += starts[b];
    for (i = 0; i < n; i++)
        order[starts[hashes[i] & (capacity - 1)]++] = (uint32_t)i;
    out = PyUnicode_New(length, maxchar);
    if (out == NULL)
        goto done;
    Py_ssize_t at = 0;
    for (i = 0; i < n; i++) {
        PyObject *key = keys[order[i]], *value = values[order[i]];
        if (i) {
            PyUnicode_WRITE(PyUnicode_KIND(out), PyUnicode_DATA(out), at, 0x02);
            at++;
        }
        if (PyUnicode_CopyCharacters(out, at, key, 0, PyUnicode_GET_LENGTH(key)) < 0)
            goto error;
        at += PyUnicode_GET_LENGTH(key);
        PyUnicode_WRITE(PyUnicode_KIND(out), PyUnicode_DATA(out), at, 0x01);
        at++;
        if (PyUnicode_CopyCharacters(out, at, value, 0, PyUnicode_GET_LENGTH(value)) < 0)
            goto error;
        at += PyUnicode_GET_LENGTH(value);
    }
    goto done;
error:
    Py_CLEAR(out);
    goto done;
fall:
    out = fallback(B_PROPERTIES_STRING, args, nargs, kwnames);
done:
    PyMem_Free(starts);
    if (keys != keys_small) {
        PyMem_Free(keys);
        PyMem_Free(values);
        PyMem_Free(hashes);
        PyMem_Free(order);
    }
    return out;
}

/* -- integer, int32 -------------------------------------------------------------------------- */

/* (speedups.h) The original accepts or refuses whatever this does not take. */
int
decimal_of(PyObject *value, long long *out)
{
    if (value == NULL || !PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        return 0;
    const char *s = (const char *)PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), i = 0;
    int negative = 0;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        i = 1;
    }
    if (n - i < 1 || n - i > 19)
        return 0;
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long long)(s[i] - '0');  /* 19 digits fit 64 bits unsigned */
    }
    if (v > (unsigned long long)LLONG_MAX + negative)
        return 0;
    *out = negative ? (long long)(0 - v) : (long long)v;
    return 1;
}

/* integer(value, field, lo=INT64 min, hi=INT64 max, default=None): the number when `value`
 * is one in range; anything else (absent, malformed, out of range, keywords) is the original's. */
PyObject *
integer(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    long long v, lo = LLONG_MIN, hi = LLONG_MAX;
    if (kwnames == NULL && nargs >= 2 && nargs <= 5 && PyUnicode_CheckExact(args[1])
        && (nargs < 3 || int_in(args[2], I64, &lo)) && (nargs < 4 || int_in(args[3], I64, &hi))
        && decimal_of(args[0], &v) && lo <= v && v <= hi)
        return PyLong_FromLongLong(v);
    return fallback(B_INTEGER, args, nargs, kwnames);
}

/* int32(value, field, default=None): integer() of an int field; `default` when value is None. */
PyObject *
int32(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    long long v;
    if (kwnames == NULL && nargs >= 2 && nargs <= 3 && PyUnicode_CheckExact(args[1])) {
        if (decimal_of(args[0], &v) && -2147483648LL <= v && v <= 2147483647LL)
            return PyLong_FromLongLong(v);
        if (args[0] == Py_None && nargs == 3 && args[2] != Py_None)
            return Py_NewRef(args[2]);
    }
    return fallback(B_INT32, args, nargs, kwnames);
}
