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

/* -- the reput step (storage/reput.py's reput_requests) ------------------------------------- */

#define TRANSACTION_MASK 0xC
#define CQ_UNIT 20

static PyObject *s_stalled, *s_first, *s_queues, *s_files, *s_file_from_offset, *s_file_size,
    *s_mm, *s_wrote_position, *s_max_phy_end, *s_config, *s_messageIndexEnable, *s_keys,
    *s_offsets, *s_store_timestamp, *s_last_dispatched_timestamp, *s_reput_offset;

static int
reput_names_ready(void)
{
    if (s_reput_offset != NULL)
        return 1;
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_stalled, "stalled"}, {&s_first, "first"}, {&s_queues, "queues"},
        {&s_files, "files"}, {&s_file_from_offset, "file_from_offset"},
        {&s_file_size, "file_size"}, {&s_mm, "mm"}, {&s_wrote_position, "wrote_position"},
        {&s_max_phy_end, "max_phy_end"}, {&s_config, "config"},
        {&s_messageIndexEnable, "messageIndexEnable"}, {&s_keys, "keys"},
        {&s_offsets, "offsets"}, {&s_store_timestamp, "store_timestamp"},
        {&s_last_dispatched_timestamp, "last_dispatched_timestamp"},
        {&s_reput_offset, "reput_offset"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (*names[i].slot == NULL
            && (*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL) {
            PyErr_Clear();
            return 0;
        }
    return 1;
}

/* An int attribute within [lo, hi]; 0 (no exception) when absent or anything else. */
static int
int_attr(PyObject *o, PyObject *name, long long lo, long long hi, long long *out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = int_in(v, lo, hi, out);
    Py_DECREF(v);
    return ok;
}

static int
set_int_attr(PyObject *o, PyObject *name, long long v)
{
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL)
        return -1;
    int rc = PyObject_SetAttr(o, name, n);
    Py_DECREF(n);
    return rc;
}

/* The last file of `cq` when it holds queue offset `qoff` (its mapping's buffer in *view,
 * the entry's place in *local), else NULL with nothing held and no exception. */
static PyObject *
tail_file(PyObject *cq, long long qoff, Py_buffer *view, long long *local)
{
    PyObject *files = PyObject_GetAttr(cq, s_files), *list = NULL, *mf = NULL, *mm = NULL;
    long long from, size;
    if (files == NULL)
        goto odd;
    list = PyObject_GetAttr(files, s_files);
    Py_DECREF(files);
    if (list == NULL || !PyList_CheckExact(list) || PyList_GET_SIZE(list) == 0)
        goto odd;
    mf = PyList_GET_ITEM(list, PyList_GET_SIZE(list) - 1);
    Py_INCREF(mf);
    if (qoff < 0 || qoff > LLONG_MAX / CQ_UNIT || !int_attr(mf, s_file_from_offset, I64, &from)
        || !int_attr(cq, s_file_size, I64, &size))
        goto odd;
    *local = qoff * CQ_UNIT - from;
    if (*local < 0 || *local >= size || (mm = PyObject_GetAttr(mf, s_mm)) == NULL
        || PyObject_GetBuffer(mm, view, PyBUF_WRITABLE) < 0)
        goto odd;
    if (*local + CQ_UNIT > view->len) {
        PyBuffer_Release(view);
        goto odd;
    }
    Py_DECREF(mm);
    Py_DECREF(list);
    return mf;
odd:
    PyErr_Clear();
    Py_XDECREF(mm);
    Py_XDECREF(mf);
    Py_XDECREF(list);
    return NULL;
}

/* One single put's request the common way: its entry written into its queue's last file, its
 * index keys added to `run`, `arrived` and the store's offsets moved on. 1 done, 0 (nothing
 * changed, no exception) for the original to do it, -1 an error. */
static int
reput_one(PyObject *store, PyObject *req, PyObject *run, PyObject *arrived, PyObject *stalled,
          PyObject *queues, int indexing)
{
    long long qid, phys, size, tags, stamp, qoff, flag, run_stamp, local, wrote, end;
    if (!PyTuple_CheckExact(req) || PyTuple_GET_SIZE(req) != 9)
        return 0;
    PyObject *topic = PyTuple_GET_ITEM(req, 0), *keys = PyTuple_GET_ITEM(req, 7);
    if (!PyUnicode_CheckExact(topic) || !int_in(PyTuple_GET_ITEM(req, 1), I32, &qid)
        || !int_in(PyTuple_GET_ITEM(req, 2), 0, LLONG_MAX / 2, &phys)
        || !int_in(PyTuple_GET_ITEM(req, 3), 1, INT32_MAX, &size)
        || !int_in(PyTuple_GET_ITEM(req, 4), I64, &tags)
        || !int_in(PyTuple_GET_ITEM(req, 5), I64, &stamp)
        || !int_in(PyTuple_GET_ITEM(req, 6), I64, &qoff)
        || !int_in(PyTuple_GET_ITEM(req, 8), I64, &flag) || flag & TRANSACTION_MASK
        || !PyList_CheckExact(keys))
        return 0;
    int index = indexing && PyList_GET_SIZE(keys) > 0;
    for (Py_ssize_t i = 0; index && i < PyList_GET_SIZE(keys); i++)
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(keys, i)))
            return 0;
    PyObject *key = PyTuple_Pack(2, topic, PyTuple_GET_ITEM(req, 1));
    if (key == NULL)
        return -1;
    int rc = 0;
    PyObject *cq = NULL, *mf = NULL, *run_keys = NULL, *run_offsets = NULL;
    Py_buffer view;
    int stalled_now = PyDict_Contains(stalled, key);
    if (stalled_now != 0) {  /* stalled (the original skips it) or an odd key */
        PyErr_Clear();
        goto done;
    }
    cq = PyDict_GetItemWithError(queues, key);
    if (cq == NULL) {
        PyErr_Clear();
        goto done;
    }
    Py_INCREF(cq);
    if (index) {
        PyObject *run_topic = PyObject_GetAttr(run, s_topic);
        int same = run_topic != NULL && int_attr(run, s_store_timestamp, I64, &run_stamp)
                   && run_stamp == stamp && PyUnicode_CheckExact(run_topic)
                   && PyUnicode_Compare(run_topic, topic) == 0;
        Py_XDECREF(run_topic);
        PyErr_Clear();
        if (!same)
            goto done;
        run_keys = PyObject_GetAttr(run, s_keys);
        run_offsets = PyObject_GetAttr(run, s_offsets);
        if (run_keys == NULL || run_offsets == NULL || !PyList_CheckExact(run_keys)
            || !PyList_CheckExact(run_offsets)) {
            PyErr_Clear();
            goto done;
        }
    }
    if ((mf = tail_file(cq, qoff, &view, &local)) == NULL)
        goto done;
    if (!int_attr(mf, s_wrote_position, I64, &wrote) || !int_attr(cq, s_max_phy_end, I64, &end)) {
        PyBuffer_Release(&view);
        goto done;
    }
    /* Past here the entry is written: everything is done, or an error raised. */
    rc = -1;
    unsigned char *p = (unsigned char *)view.buf + local;
    wr64(p, (uint64_t)phys);
    wr32(p + 8, (uint32_t)size);
    wr64(p + 12, (uint64_t)tags);
    PyBuffer_Release(&view);
    if (local + CQ_UNIT > wrote && set_int_attr(mf, s_wrote_position, local + CQ_UNIT) < 0)
        goto done;
    if (phys + size > end && set_int_attr(cq, s_max_phy_end, phys + size) < 0)
        goto done;
    if (index) {
        PyObject *at = PyTuple_GET_ITEM(req, 2);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++)
            if (PyList_Append(run_keys, PyList_GET_ITEM(keys, i)) < 0
                || PyList_Append(run_offsets, at) < 0)
                goto done;
    }
    if (PyObject_SetAttr(store, s_last_dispatched_timestamp, PyTuple_GET_ITEM(req, 5)) < 0)
        goto done;
    PyObject *next = PyLong_FromLongLong(qoff + 1);
    if (next == NULL || PyDict_SetItem(arrived, key, next) < 0) {
        Py_XDECREF(next);
        goto done;
    }
    Py_DECREF(next);
    if (set_int_attr(store, s_reput_offset, phys + size) < 0)
        goto done;
    rc = 1;
done:
    Py_XDECREF(run_keys);
    Py_XDECREF(run_offsets);
    Py_XDECREF(mf);
    Py_XDECREF(cq);
    Py_DECREF(key);
    return rc;
}

/* reput_requests(store, requests, run, arrived): what the common single put needs is done
 * here; a batch, a transaction's message, a stalled or new queue, an entry for another file
 * and a new index run go to the original, one request at a time. */
PyObject *
reput_requests(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[1]) || !PyDict_CheckExact(args[3])
        || !reput_names_ready())
        return fallback(B_REPUT_REQUESTS, args, nargs, NULL);
    PyObject *store = args[0], *requests = args[1], *run = args[2], *arrived = args[3];
    PyObject *stalled = NULL, *first = NULL, *queues = NULL, *config = NULL, *flag = NULL;
    PyObject *result = NULL;
    int indexing = 0;
    if ((stalled = PyObject_GetAttr(store, s_stalled)) == NULL
        || (first = PyObject_GetAttr(stalled, s_first)) == NULL
        || (queues = PyObject_GetAttr(store, s_queues)) == NULL
        || (config = PyObject_GetAttr(store, s_config)) == NULL
        || (flag = PyObject_GetAttr(config, s_messageIndexEnable)) == NULL
        || (indexing = PyObject_IsTrue(flag)) < 0 || !PyDict_CheckExact(first)
        || !PyDict_CheckExact(queues)) {
        PyErr_Clear();
        result = fallback(B_REPUT_REQUESTS, args, nargs, NULL);
        goto out;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(requests); i++) {
        PyObject *req = PyList_GET_ITEM(requests, i);
        Py_INCREF(req);
        int rc = reput_one(store, req, run, arrived, first, queues, indexing);
        if (rc == 0) {
            PyObject *one = PyList_New(1);
            if (one != NULL) {
                Py_INCREF(req);
                PyList_SET_ITEM(one, 0, req);
                PyObject *call[4] = {store, one, run, arrived};
                PyObject *r = fallback(B_REPUT_REQUESTS, call, 4, NULL);
                Py_DECREF(one);
                rc = r == NULL ? -1 : 1;
                Py_XDECREF(r);
            } else
                rc = -1;
        }
        Py_DECREF(req);
        if (rc < 0)
            goto out;
    }
    result = Py_NewRef(Py_None);
out:
    Py_XDECREF(stalled);
    Py_XDECREF(first);
    Py_XDECREF(queues);
    Py_XDECREF(config);
    Py_XDECREF(flag);
    return result;
}
