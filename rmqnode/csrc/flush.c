/* A flush thread that fdatasyncs without the GIL (storage/flush.py's FlushService uses it under
 * SYNC_FLUSH; its worker thread with os.fdatasync stays the pure-Python way of doing the same).
 *
 * Why: a worker thread in Python needs the GIL to start its round and again to hand the result
 * back (its future, call_soon_threadsafe), while the loop's thread holds the GIL for the sends
 * it is storing; under load, that hand-off cost a third of each round. This thread never takes
 * the GIL: it is given the files' descriptors (duplicated, so a file closed meanwhile is never
 * mistaken for another), fdatasyncs them, and says so through an eventfd that the loop
 * watches, or to a caller blocked in wait() with the GIL released. One round at a time: what
 * the round covers, and what it answers, the caller keeps.
 */
#include "speedups.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, QUEUED, DONE };

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* the thread waits for QUEUED or stop, wait() for DONE */
    pthread_t thread;
    int started, stop, state;
    int efd;
    int *fds;
    Py_ssize_t nfds;
    int err;         /* the first fdatasync's errno of the round, 0 when all went well */
    double seconds;  /* how long the round's fdatasyncs took */
} Flusher;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
run(void *arg)
{
    Flusher *f = arg;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (f->state != QUEUED && !f->stop)
            pthread_cond_wait(&f->cond, &f->lock);
        if (f->state != QUEUED)
            break;
        int *fds = f->fds;
        Py_ssize_t n = f->nfds;
        f->fds = NULL;
        pthread_mutex_unlock(&f->lock);
        int err = 0;
        double began = now();
        for (Py_ssize_t i = 0; i < n; i++) {
            if (fdatasync(fds[i]) != 0 && err == 0)
                err = errno;
            close(fds[i]);
        }
        double seconds = now() - began;
        free(fds);
        pthread_mutex_lock(&f->lock);
        f->err = err;
        f->seconds = seconds;
        f->state = DONE;
        pthread_cond_broadcast(&f->cond);
        uint64_t one = 1;
        ssize_t wrote = write(f->efd, &one, sizeof one);  /* fails only when it is full */
        (void)wrote;
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static PyObject *
Flusher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Flusher() takes no arguments");
        return NULL;
    }
    Flusher *f = (Flusher *)type->tp_alloc(type, 0);
    if (f == NULL)
        return NULL;
    f->efd = -1;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(f);
        return NULL;
    }
    int rc = pthread_create(&f->thread, NULL, run, f);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(f);
        return NULL;
    }
    f->started = 1;
    return (PyObject *)f;
}

/* Stop the thread once its round is done; the eventfd goes too. */
static void
shut(Flusher *f)
{
    if (f->started) {
        pthread_mutex_lock(&f->lock);
        f->stop = 1;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(f->thread, NULL);
        Py_END_ALLOW_THREADS
        f->started = 0;
    }
    if (f->fds != NULL) {  /* queued, never started */
        for (Py_ssize_t i = 0; i < f->nfds; i++)
            close(f->fds[i]);
        free(f->fds);
        f->fds = NULL;
    }
    if (f->efd >= 0) {
        close(f->efd);
        f->efd = -1;
    }
}

static void
Flusher_dealloc(Flusher *f)
{
    shut(f);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static int
usable(Flusher *f)
{
    if (f->efd < 0) {
        PyErr_SetString(PyExc_ValueError, "the flusher is closed");
        return 0;
    }
    return 1;
}

/* submit(fds): a round that fdatasyncs these descriptors (duplicated here, closed by the
 * thread). RuntimeError while a round is under way. */
static PyObject *
Flusher_submit(Flusher *f, PyObject *fds)
{
    if (!usable(f))
        return NULL;
    if (f->state != IDLE) {
        PyErr_SetString(PyExc_RuntimeError, "a flush round is under way");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(fds, "submit() takes a sequence of descriptors");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int *dup = malloc(sizeof(int) * (n ? n : 1));
    if (dup == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (fd == -1 && PyErr_Occurred())
            break;
        if (fd < INT_MIN || fd > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a descriptor out of the range of int");
            break;
        }
        if ((dup[i] = fcntl((int)fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
    }
    Py_DECREF(seq);
    if (i < n) {
        while (i-- > 0)
            close(dup[i]);
        free(dup);
        return NULL;
    }
    pthread_mutex_lock(&f->lock);
    f->fds = dup;
    f->nfds = n;
    f->state = QUEUED;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    Py_RETURN_NONE;
}

/* wait(timeout) -> whether the round is done, after at most `timeout` seconds with the GIL
 * released. */
static PyObject *
Flusher_wait(Flusher *f, PyObject *arg)
{
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (!usable(f))
        return NULL;
    int done;
    Py_BEGIN_ALLOW_THREADS
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double end = until.tv_sec + until.tv_nsec / 1e9 + (timeout > 0 ? timeout : 0);
    until.tv_sec = (time_t)end;
    until.tv_nsec = (long)((end - (double)until.tv_sec) * 1e9);
    pthread_mutex_lock(&f->lock);
    while (f->state == QUEUED)
        if (pthread_cond_timedwait(&f->cond, &f->lock, &until) == ETIMEDOUT)
            break;
    done = f->state == DONE;
    pthread_mutex_unlock(&f->lock);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(done);
}

/* result() -> None while the round runs (or when there is none), else the seconds its
 * fdatasyncs took, and the flusher is ready for the next; OSError when one failed. The
 * eventfd is read empty. */
static PyObject *
Flusher_result(Flusher *f, PyObject *Py_UNUSED(ignored))
{
    if (!usable(f))
        return NULL;
    pthread_mutex_lock(&f->lock);
    int state = f->state, err = f->err;
    double seconds = f->seconds;
    if (state == DONE)
        f->state = IDLE;
    pthread_mutex_unlock(&f->lock);
    if (state != DONE)
        Py_RETURN_NONE;
    uint64_t count;
    ssize_t got = read(f->efd, &count, sizeof count);  /* EAGAIN when read already */
    (void)got;
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyFloat_FromDouble(seconds);
}

static PyObject *
Flusher_fileno(Flusher *f, PyObject *Py_UNUSED(ignored))
{
    if (!usable(f))
        return NULL;
    return PyLong_FromLong(f->efd);
}

static PyObject *
Flusher_close(Flusher *f, PyObject *Py_UNUSED(ignored))
{
    shut(f);
    Py_RETURN_NONE;
}

static PyMethodDef Flusher_methods[] = {
    {"submit", (PyCFunction)Flusher_submit, METH_O, "submit(fds): fdatasync them in the thread."},
    {"wait", (PyCFunction)Flusher_wait, METH_O, "wait(timeout) -> the round is done."},
    {"result", (PyCFunction)Flusher_result, METH_NOARGS,
     "result() -> None while running, else the round's seconds (OSError if it failed)."},
    {"fileno", (PyCFunction)Flusher_fileno, METH_NOARGS, "The eventfd that says a round is done."},
    {"close", (PyCFunction)Flusher_close, METH_NOARGS, "Stop the thread after its round."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FlusherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rmqnode._speedups.Flusher",
    .tp_basicsize = sizeof(Flusher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A thread that fdatasyncs descriptors without the GIL and signals an eventfd.",
    .tp_new = Flusher_new,
    .tp_dealloc = (destructor)Flusher_dealloc,
    .tp_methods = Flusher_methods,
};

int
add_flusher(PyObject *module)
{
    if (PyType_Ready(&FlusherType) < 0)
        return -1;
    Py_INCREF(&FlusherType);
    if (PyModule_AddObject(module, "Flusher", (PyObject *)&FlusherType) < 0) {
        Py_DECREF(&FlusherType);
        return -1;
    }
    return 0;
}
