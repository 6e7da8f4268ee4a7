/* A connection's read (net/connection.py's serve_read, its data_received): the frames it
 * completes decoded, each request's handler called inside the dispatcher's around_read, the
 * answers that are frames gathered and written in one write. Under one sender a read is one
 * send, and its Python around the handler (the read, the decoder's feed, _dispatch, the
 * write) cost as much as the send's own C.
 *
 * What is not the common case calls the connection's own methods, the definitions the
 * original calls: a frame error (_bad_frame), a response (_on_response), a request without a
 * handler (_dispatch), a handler that raised (_failed) or answered with anything but a frame
 * (_answer), input left incomplete (_track_input). A read while debug logging is on, or of
 * anything but bytes, is the original's. */
#include "speedups.h"

enum { FLAG_RESPONSE = 0x1, FLAG_ONEWAY = 0x2 };  /* codec.py's */

/* decoder.feed(data), its common case here: nothing held from the read before, so the
 * frames are decoded where they lie and only an incomplete tail is kept. A new reference to
 * the commands, or NULL with the error raised (a FrameError among them). */
static PyObject *
fed(PyObject *decoder, PyObject *data)
{
    PyObject *buf = PyObject_GetAttr(decoder, s__buf), *got = NULL, *commands = NULL;
    if (buf == NULL)
        return NULL;
    if (!PyByteArray_CheckExact(buf) || PyByteArray_GET_SIZE(buf) != 0) {
        Py_DECREF(buf);
        return PyObject_CallMethodOneArg(decoder, s_feed, data);
    }
    PyObject *max_frame = PyObject_GetAttr(decoder, s_max_frame);
    if (max_frame != NULL) {
        PyObject *args[2] = {data, max_frame};
        got = decode_frames(NULL, args, 2);
        Py_DECREF(max_frame);
    }
    long long pos;
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (got != NULL && (!PyTuple_CheckExact(got) || PyTuple_GET_SIZE(got) != 2
                        || !PyList_CheckExact(PyTuple_GET_ITEM(got, 0))
                        || !int_in(PyTuple_GET_ITEM(got, 1), 0, n, &pos)))
        PyErr_SetString(PyExc_RuntimeError, "speedups: decode_frames gave no (list, pos)");
    else if (got != NULL && (pos == n || PyByteArray_Resize(buf, n - pos) == 0)) {
        memcpy(PyByteArray_AS_STRING(buf), PyBytes_AS_STRING(data) + pos, n - pos);
        commands = Py_NewRef(PyTuple_GET_ITEM(got, 0));
    }
    Py_XDECREF(got);
    Py_DECREF(buf);
    return commands;
}

/* conn.method(args...) with the result dropped: 0, or -1 with the error raised. */
static int
call(PyObject *conn, PyObject *name, PyObject *a, PyObject *b)
{
    PyObject *args[3] = {conn, a, b};
    PyObject *r = PyObject_VectorcallMethod(name, args, 1 + (a != NULL) + (b != NULL), NULL);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* The raised exception, normalized and with its traceback, taken (none left raised). */
static PyObject *
taken_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* The error raised now, taken, with `first` (taken; NULL for none) as its context, as
 * Python chains an error raised while another is being handled. */
static PyObject *
chained(PyObject *first)
{
    PyObject *exc = taken_exception();
    if (exc != NULL && first != NULL)
        PyException_SetContext(exc, first);
    else
        Py_XDECREF(first);
    return exc;
}

/* `exc` (taken) raised again, with its own traceback. */
static void
raise_again(PyObject *exc)
{
    if (exc != NULL)
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}

/* One request, as Connection._dispatch does it: 0, or -1 with an error raised that is not an
 * Exception's (the original lets those through). */
static int
dispatch(PyObject *conn, PyObject *cmd, const Py_ssize_t *at, long long flag,
         PyObject *handlers)
{
    PyObject *code = field(cmd, at, CMD_CODE, s_code), *handler;
    if (code == NULL)
        return -1;
    handler = PyDict_GetItemWithError(handlers, code);
    Py_DECREF(code);
    if (handler == NULL)
        return PyErr_Occurred() ? -1 : call(conn, s__dispatch, cmd, NULL);
    Py_INCREF(handler);
    PyObject *args[2] = {cmd, conn};
    PyObject *result = PyObject_Vectorcall(handler, args, 2, NULL);
    Py_DECREF(handler);
    int rc = 0;
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyObject *exc = taken_exception();
        rc = exc != NULL ? call(conn, s__failed, cmd, exc) : -1;
        Py_XDECREF(exc);
    } else if (!PyBytes_CheckExact(result)) {
        rc = call(conn, s__answer, cmd, result);
    } else if (!(flag & FLAG_ONEWAY)) {  /* a frame joins the read's answers */
        PyObject *out = PyObject_GetAttr(conn, s__out);
        if (out == NULL) {
            rc = -1;
        } else if (out == Py_None) {
            PyObject *list = PyList_New(1);
            if (list != NULL)
                PyList_SET_ITEM(list, 0, Py_NewRef(result));
            rc = list != NULL ? PyObject_SetAttr(conn, s__out, list) : -1;
            Py_XDECREF(list);
        } else {
            rc = PyList_CheckExact(out) ? PyList_Append(out, result)
                                        : call(out, s_append, result, NULL);
        }
        Py_XDECREF(out);
    }
    Py_XDECREF(result);
    return rc;
}

/* The read's commands handled (inside around_read, entered by the caller): 0, or -1 with the
 * error raised. */
static int
handled(PyObject *conn, PyObject *commands)
{
    PyObject *dispatcher = PyObject_GetAttr(conn, s_dispatcher), *handlers = NULL;
    int rc = -1;
    if (dispatcher == NULL || (handlers = PyObject_GetAttr(dispatcher, s_handlers)) == NULL)
        goto done;
    if (!PyDict_Check(handlers)) {
        PyErr_SetString(PyExc_TypeError, "speedups: the dispatcher's handlers are no dict");
        goto done;
    }
    rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(commands); i++) {
        PyObject *cmd = Py_NewRef(PyList_GET_ITEM(commands, i));
        long long flag;
        Py_ssize_t where[CMD_COUNT];
        const Py_ssize_t *at = fields_at(&command_kept, cmd, command_fields, CMD_COUNT, where);
        PyObject *f = field(cmd, at, CMD_FLAG, s_flag);
        if (f == NULL || !int_in(f, I64, &flag)) {
            if (f != NULL)
                PyErr_SetString(PyExc_TypeError, "speedups: a command's flag is no int");
            rc = -1;
        } else {
            rc = flag & FLAG_RESPONSE ? call(conn, s__on_response, cmd, NULL)
                                      : dispatch(conn, cmd, at, flag, handlers);
        }
        Py_XDECREF(f);
        Py_DECREF(cmd);
    }
done:
    Py_XDECREF(dispatcher);
    Py_XDECREF(handlers);
    return rc;
}

/* Connection._flush_out: the answers gathered written in one write. */
static int
flushed_out(PyObject *conn)
{
    PyObject *out = PyObject_GetAttr(conn, s__out), *transport = NULL, *closing = NULL;
    int rc = -1;
    if (out == NULL)
        return -1;
    if (out == Py_None) {
        Py_DECREF(out);
        return 0;
    }
    if (!PyList_CheckExact(out)) {  /* the original's to read */
        Py_DECREF(out);
        return call(conn, s__flush_out, NULL, NULL);
    }
    if (PyObject_SetAttr(conn, s__out, Py_None) < 0
        || (transport = PyObject_GetAttr(conn, s_transport)) == NULL)
        goto done;
    rc = 0;
    if (PyList_GET_SIZE(out) == 0 || transport == Py_None)
        goto done;
    rc = -1;
    if ((closing = PyObject_CallMethodNoArgs(transport, s_is_closing)) == NULL)
        goto done;
    int is = PyObject_IsTrue(closing);
    if (is != 0) {
        rc = is < 0 ? -1 : 0;
        goto done;
    }
    if (PyList_GET_SIZE(out) == 1) {
        rc = call(transport, s_write, PyList_GET_ITEM(out, 0), NULL);
    } else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        PyObject *joined = empty ? PyObject_CallMethodOneArg(empty, s_join, out) : NULL;
        rc = joined != NULL ? call(transport, s_write, joined, NULL) : -1;
        Py_XDECREF(empty);
        Py_XDECREF(joined);
    }
done:
    Py_DECREF(out);
    Py_XDECREF(transport);
    Py_XDECREF(closing);
    return rc;
}

/* serve_read(conn, data): see the original. */
PyObject *
serve_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_CheckExact(args[1]) || bound[B_FRAME_ERROR] == NULL
        || bound[B_DEBUG_ON] == NULL)
        return fallback(B_SERVE_READ, args, nargs, NULL);
    PyObject *debug = PyObject_CallNoArgs(bound[B_DEBUG_ON]);
    if (debug == NULL)
        return NULL;
    int quiet = debug == Py_False;
    Py_DECREF(debug);
    if (!quiet)  /* each request's debug line is the original's */
        return fallback(B_SERVE_READ, args, nargs, NULL);
    PyObject *conn = args[0], *decoder = NULL, *commands = NULL, *around = NULL, *r;
    PyObject *dispatcher = NULL;
    PyObject *now = PyFloat_FromDouble(clock_ns(CLOCK_MONOTONIC) * 1e-9);  /* time.monotonic */
    int rc = now != NULL ? PyObject_SetAttr(conn, s_last_active, now) : -1;
    Py_XDECREF(now);
    if (rc < 0 || (decoder = PyObject_GetAttr(conn, s_decoder)) == NULL)
        goto failed;
    if ((commands = fed(decoder, args[1])) == NULL) {
        if (!PyErr_ExceptionMatches(bound[B_FRAME_ERROR]))
            goto failed;
        PyObject *exc = taken_exception();
        rc = exc != NULL ? call(conn, s__bad_frame, exc, NULL) : -1;
        Py_XDECREF(exc);
        Py_DECREF(decoder);
        if (rc < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (!PyList_CheckExact(commands)) {
        PyErr_SetString(PyExc_TypeError, "speedups: the decoder gave no list");
        goto failed;
    }
    /* with conn.dispatcher.around_read: (try: ... finally: the answers written) */
    if ((dispatcher = PyObject_GetAttr(conn, s_dispatcher)) == NULL
        || (around = PyObject_GetAttr(dispatcher, s_around_read)) == NULL
        || (r = PyObject_CallMethodNoArgs(around, s___enter__)) == NULL)
        goto failed;
    Py_DECREF(r);
    rc = PyObject_SetAttr(conn, s__receiving, Py_True);
    if (rc == 0)
        rc = handled(conn, commands);
    /* finally: as in the original, an error here replaces one from the handling */
    PyObject *exc = rc < 0 ? taken_exception() : NULL;
    if (PyObject_SetAttr(conn, s__receiving, Py_False) < 0 || flushed_out(conn) < 0)
        exc = chained(exc);
    /* __exit__, told of the error if there is one, which it may swallow */
    PyObject *tb = exc != NULL ? PyException_GetTraceback(exc) : NULL;
    PyObject *exit_args[4] = {around, exc ? (PyObject *)Py_TYPE(exc) : Py_None,
                              exc ? exc : Py_None, tb ? tb : Py_None};
    r = PyObject_VectorcallMethod(s___exit__, exit_args, 4, NULL);
    Py_XDECREF(tb);
    int swallowed = r == NULL ? -1 : exc != NULL ? PyObject_IsTrue(r) : 0;
    Py_XDECREF(r);
    if (swallowed < 0) {  /* __exit__ raised: its error wins */
        if (exc != NULL)
            raise_again(chained(exc));
        goto failed;
    }
    if (exc != NULL && !swallowed) {
        raise_again(exc);
        goto failed;
    }
    Py_XDECREF(exc);
    /* input left in an incomplete frame: its bookkeeping */
    PyObject *buf = PyObject_GetAttr(decoder, s__buf);
    long long buffered;
    if (buf == NULL)
        goto failed;
    Py_ssize_t pending = PyByteArray_Check(buf) ? PyByteArray_GET_SIZE(buf) : PyObject_Size(buf);
    Py_DECREF(buf);
    if (pending < 0)
        goto failed;
    if (!int_attr(conn, s_buffered_input, I64, &buffered)) {
        PyErr_SetString(PyExc_TypeError, "speedups: buffered_input is no int");
        goto failed;
    }
    if (pending || buffered) {
        PyObject *p = PyLong_FromSsize_t(pending);
        rc = p != NULL ? call(conn, s__track_input, p,
                              PyList_GET_SIZE(commands) ? Py_True : Py_False) : -1;
        Py_XDECREF(p);
        if (rc < 0)
            goto failed;
    }
    Py_DECREF(decoder);
    Py_DECREF(commands);
    Py_DECREF(dispatcher);
    Py_DECREF(around);
    Py_RETURN_NONE;
failed:
    Py_XDECREF(decoder);
    Py_XDECREF(commands);
    Py_XDECREF(dispatcher);
    Py_XDECREF(around);
    return NULL;
}

/* instancemethod(func): `func` bound as a method when read from an instance. */
PyObject *
instancemethod(PyObject *self, PyObject *func)
{
    return PyInstanceMethod_New(func);
}
