/* The reput's common case (storage/reput.py's dispatch_plain): the consume-queue entries of
 * single plain puts written into their queues' last files, their queues' new ends and their
 * index keys gathered in runs, in one call for what a loop iteration stored. Per message the
 * Python reput made five calls (the dispatch, the entry, the file's lookup, the pack and the
 * index run); under the C++ client's load it was a quarter of the node's CPU. */
#include "speedups.h"

/* obj.name (its i-th field, as set_field sets it) = v when v is above what it holds (an
 * exact int); -1 with the error raised. */
static int
raise_field(PyObject *obj, const Py_ssize_t *at, int i, PyObject *name, long long held,
            long long v)
{
    return v <= held ? 0 : set_int_field(obj, at, i, name, v);
}

/* Index keys of one topic stored in one millisecond, for one index() call. */
typedef struct {
    PyObject *topic, *stamp, *keys, *offsets;
} Run;

/* The run written into the last index file (index_in_last), else by index(). */
static int
run_write(Run *run, PyObject *index, PyObject *files)
{
    if (run->keys == NULL || PyList_GET_SIZE(run->keys) == 0)
        return 0;
    int rc = index_last_write(files, run->topic, run->keys, run->offsets, run->stamp);
    if (rc == 0) {
        PyObject *args[5] = {run->topic, run->keys, run->offsets, run->stamp,
                             PyList_GET_ITEM(run->offsets, 0)};
        PyObject *r = PyObject_Vectorcall(index, args, 5, NULL);
        rc = r != NULL ? 0 : -1;
        Py_XDECREF(r);
    }
    Py_CLEAR(run->keys);
    Py_CLEAR(run->offsets);
    return rc < 0 ? -1 : 0;
}

static void
run_clear(Run *run)
{
    Py_CLEAR(run->topic);
    Py_CLEAR(run->stamp);
    Py_CLEAR(run->keys);
    Py_CLEAR(run->offsets);
}

/* The index keys of a message at `offset` join the run, which is written first when it holds
 * another topic's or another millisecond's. */
static int
run_join(Run *run, PyObject *index, PyObject *files, PyObject *topic, PyObject *stamp,
         PyObject *keys, PyObject *offset)
{
    if (run->keys != NULL && PyList_GET_SIZE(run->keys)) {
        int same = PyObject_RichCompareBool(stamp, run->stamp, Py_EQ);
        if (same == 1)
            same = PyObject_RichCompareBool(topic, run->topic, Py_EQ);
        if (same < 0 || (same == 0 && run_write(run, index, files) < 0))
            return -1;
    }
    Py_INCREF(topic);
    Py_XSETREF(run->topic, topic);
    Py_INCREF(stamp);
    Py_XSETREF(run->stamp, stamp);
    if (run->keys == NULL && ((run->keys = PyList_New(0)) == NULL
                              || (run->offsets = PyList_New(0)) == NULL))
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++)
        if (PyList_Append(run->keys, PyList_GET_ITEM(keys, i)) < 0
            || PyList_Append(run->offsets, offset) < 0)
            return -1;
    return 0;
}

/* ConsumeQueue.put_in_last's test, from the same attributes (consumequeue.py): the queue's
 * last file, when `pos` (a queue offset * 20) is a slot of it that can be written:
 * 1 and a new reference in *mf, its mapping's buffer in *view, the entry's place in it in
 * *local and its write position in *wrote. 0 when it is the general path's (no file, another
 * file, a closed or read-only one), 2 when a position is not an int: no exception either way. */
static int
slot_in_last_file(PyObject *cq, long long pos, PyObject **mf, Py_buffer *view,
                  long long *local, long long *wrote)
{
    PyObject *mfq = PyObject_GetAttr(cq, s_files), *files = NULL, *mm = NULL;
    long long start, size;
    int rc = 2;
    *mf = NULL;
    if (mfq == NULL || (files = PyObject_GetAttr(mfq, s_files)) == NULL
        || !PyList_CheckExact(files))
        goto no;
    rc = 0;
    if (PyList_GET_SIZE(files) == 0)
        goto no;
    *mf = Py_NewRef(PyList_GET_ITEM(files, PyList_GET_SIZE(files) - 1));
    rc = 2;
    Py_ssize_t where[MF_COUNT];
    const Py_ssize_t *at = fields_at(&mapped_file_kept, *mf, mapped_file_fields, MF_COUNT, where);
    if (!int_field(*mf, at, MF_FROM, s_file_from_offset, I64, &start)
        || !int_field(*mf, at, MF_FILE_SIZE, s_file_size, I64, &size)
        || !int_field(*mf, at, MF_WROTE, s_wrote_position, I64, wrote))
        goto no;
    rc = 0;
    *local = pos - start;  /* pos and start are not negative: no overflow */
    if (*local < 0 || *local > size - 20)
        goto no;
    if ((mm = field(*mf, at, MF_READONLY, s_readonly)) == NULL || PyObject_IsTrue(mm) != 0)
        goto no;
    Py_CLEAR(mm);
    if ((mm = field(*mf, at, MF_MM, s_mm)) == NULL || mm == Py_None)
        goto no;
    /* A closed mapping refuses a buffer, a read-only one a writable buffer. */
    if (PyObject_GetBuffer(mm, view, PyBUF_WRITABLE) < 0)
        goto no;
    if (view->len < *local + 20) {
        PyBuffer_Release(view);
        goto no;
    }
    rc = 1;
no:
    PyErr_Clear();
    Py_XDECREF(mfq);
    Py_XDECREF(files);
    Py_XDECREF(mm);
    if (rc != 1)
        Py_CLEAR(*mf);
    return rc;
}

/* One request done, if it is one dispatch_plain does: 1 done (popped), 0 not for this path
 * (left in pending), 2 a request of odd fields (left for the original), -1 an error raised. */
static int
dispatch_one(PyObject *pending, PyObject *req, PyObject *queues, PyObject *stalled,
             PyObject *arrived, PyObject *index, PyObject *files, Run *run, long long *end)
{
    long long queue_id, offset, size, tags, stamp, qoff, flag, local, phy_end;
    if (!PyTuple_CheckExact(req))
        return 0;  /* a batch's, or a DispatchRequest */
    if (PyTuple_GET_SIZE(req) != 9)
        return 2;
    PyObject *const *f = &PyTuple_GET_ITEM(req, 0);
    if (!PyUnicode_CheckExact(f[0]) || !int_in(f[1], I32, &queue_id)
        || !int_in(f[2], 0, LLONG_MAX, &offset) || !int_in(f[3], I32, &size)
        || !int_in(f[4], I64, &tags) || !int_in(f[5], I64, &stamp)
        || !int_in(f[6], 0, LLONG_MAX / 20, &qoff) || !PyList_CheckExact(f[7])
        || !int_in(f[8], I32, &flag) || __builtin_add_overflow(offset, size, &phy_end))
        return 2;
    if (flag & 0xC)  /* TRANSACTION_MASK */
        return 0;
    PyObject *key = PyTuple_Pack(2, f[0], f[1]), *cq, *mf = NULL;
    if (key == NULL)
        return -1;
    int rc = PyDict_Contains(stalled, key);
    if (rc != 0) {  /* a stalled queue is the general path's; -1 an error */
        rc = rc < 0 ? -1 : 0;
        goto out;
    }
    if ((cq = PyDict_GetItemWithError(queues, key)) == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto out;
    }
    Py_INCREF(cq);
    Py_buffer view;
    long long wrote, max_end;
    rc = int_attr(cq, s_max_phy_end, I64, &max_end) ?
        slot_in_last_file(cq, qoff * 20, &mf, &view, &local, &wrote) : 2;
    if (rc != 1) {
        Py_DECREF(cq);
        goto out;
    }
    unsigned char *d = (unsigned char *)view.buf + local;
    wr64(d, (uint64_t)offset);
    wr32(d + 8, (uint32_t)size);
    wr64(d + 12, (uint64_t)tags);
    PyBuffer_Release(&view);
    PyObject *popped = PyObject_CallMethodNoArgs(pending, s_popleft), *next = NULL;
    rc = -1;
    if (popped == NULL)
        goto written;
    Py_DECREF(popped);
    Py_ssize_t where[MF_COUNT];
    const Py_ssize_t *at = fields_at(&mapped_file_kept, mf, mapped_file_fields, MF_COUNT, where);
    if (raise_field(mf, at, MF_WROTE, s_wrote_position, wrote, local + 20) < 0
        || raise_field(cq, NULL, 0, s_max_phy_end, max_end, phy_end) < 0
        || (next = PyLong_FromLongLong(qoff + 1)) == NULL
        || PyDict_SetItem(arrived, key, next) < 0)
        goto written;
    if (files != Py_None && PyList_GET_SIZE(f[7])
        && run_join(run, index, files, f[0], f[5], f[7], f[2]) < 0)
        goto written;
    *end = phy_end;
    rc = 1;
written:
    Py_XDECREF(next);
    Py_DECREF(cq);
out:
    Py_XDECREF(mf);
    Py_DECREF(key);
    return rc;
}

/* dispatch_plain(pending, queues, stalled, arrived, index, index_files) -> (end, store time) of
 * the last request done, or None: see the original. Arguments of other types go to it, and
 * so does a request of odd fields, with what is left (after the index run so far is
 * written: the original writes it as it goes). */
PyObject *
dispatch_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyDict_CheckExact(args[1]) || !PyDict_CheckExact(args[2])
        || !PyDict_CheckExact(args[3]) || !PySequence_Check(args[0]))
        return fallback(B_DISPATCH_PLAIN, args, nargs, NULL);
    Run run = {NULL, NULL, NULL, NULL};
    PyObject *stamp = NULL, *type, *value, *tb;
    long long end = 0;
    int rc = 0;
    for (;;) {
        Py_ssize_t n = PySequence_Size(args[0]);
        if (n < 0)
            goto failed;
        if (n == 0)
            break;
        PyObject *req = PySequence_GetItem(args[0], 0);
        if (req == NULL)
            goto failed;
        rc = dispatch_one(args[0], req, args[1], args[2], args[3], args[4], args[5], &run, &end);
        if (rc == 1)
            Py_XSETREF(stamp, Py_NewRef(PyTuple_GET_ITEM(req, 5)));
        Py_DECREF(req);
        if (rc < 0)
            goto failed;
        if (rc != 1)
            break;
    }
    if (run_write(&run, args[4], args[5]) < 0)
        goto failed;
    run_clear(&run);
    if (rc == 2) {  /* the original goes on from the odd request */
        PyObject *more = fallback(B_DISPATCH_PLAIN, args, nargs, NULL);
        if (more != Py_None || stamp == NULL) {
            Py_XDECREF(stamp);
            return more;
        }
        Py_DECREF(more);
    }
    if (stamp == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(LN)", end, stamp);
failed:  /* as the original's `finally`: the run so far is written, its error wins */
    PyErr_Fetch(&type, &value, &tb);
    if (run_write(&run, args[4], args[5]) < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(type, value, tb);
    }
    run_clear(&run);
    Py_XDECREF(stamp);
    return NULL;
}
