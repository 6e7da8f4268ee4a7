/* The CommitLog's append of one put (storage/commitlog.py's place_records): its records
 * stamped and copied into the mapped file in one call. */
#include "speedups.h"

/* place_records(buf, pos, records, sizes, queue_offset, physical_offset, store_timestamp)
 * -> the end position: the records stamped as stamp_records does, then copied to buf[pos:].
 * Anything odd (a place outside buf, a record that does not fit its size) goes to the
 * original, with nothing written. */
PyObject *
place_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long pos, qoff, phys, ts;
    Py_buffer dst, src;
    if (nargs != 7 || !int_in(args[1], 0, PY_SSIZE_T_MAX, &pos) || !PyList_CheckExact(args[3])
        || !int_in(args[4], I64, &qoff) || !int_in(args[5], I64, &phys)
        || !int_in(args[6], I64, &ts))
        return fallback(B_PLACE_RECORDS, args, nargs, NULL);
    if (PyObject_GetBuffer(args[0], &dst, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return fallback(B_PLACE_RECORDS, args, nargs, NULL);
    }
    if (PyObject_GetBuffer(args[2], &src, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyBuffer_Release(&dst);
        return fallback(B_PLACE_RECORDS, args, nargs, NULL);
    }
    int ok = pos <= dst.len - src.len
             && stamp_buffer(src.buf, src.len, args[3], qoff, phys, ts);
    if (ok)
        memmove((char *)dst.buf + pos, src.buf, (size_t)src.len);
    Py_ssize_t end = (Py_ssize_t)pos + src.len;
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (!ok)
        return fallback(B_PLACE_RECORDS, args, nargs, NULL);
    return PyLong_FromSsize_t(end);
}
