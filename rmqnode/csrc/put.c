/* The common send in C (broker/send.py): handle_send, the request's checks and its messages
 * (SendProcessor.handle's common case: one message, or a batch's), and stored_at_once, a
 * plain put of them into the CommitLog's last file, counted and answered. Each step was C
 * already (the header, the message, the record's encode, its pwrite, the reput's request,
 * the ids, the answer's frame); the pure path wrapped them in a score of Python calls and
 * three dataclasses, which cost more than the steps.
 *
 * Whatever is not that case goes to the original with nothing done: a topic to create or
 * refuse, a delayed or transactional message, a batch handle would refuse, a read-only store
 * or a slave, a record that does not fit the last file (a new file), zeros ahead that could
 * not be written, fields of odd types, or a step that fails before the record is
 * written (a refusal of the encode, a failed pwrite): the original then does it and words
 * the refusal. Where the put waits (SYNC_FLUSH, SYNC_MASTER), handle_send hands its answer to
 * SendProcessor.answered. Once the record is written nothing falls back; an error then (out
 * of memory) is raised, as the original would raise it. */
#include "speedups.h"

#include <strings.h>

/* obj.name, its i-th field (as `field` reads it), a new reference; NULL (and no exception)
 * when obj is NULL or has none. */
static PyObject *
attr_field(PyObject *obj, const Py_ssize_t *at, int i, PyObject *name)
{
    PyObject *v = obj != NULL ? field(obj, at, i, name) : NULL;
    if (v == NULL)
        PyErr_Clear();
    return v;
}
#define attr(obj, name) attr_field((obj), NULL, 0, (name))

/* What the put reads before it writes, every object held. */
enum {
    H_BROKER, H_STORE, H_CONFIG, H_READONLY, H_ROLE, H_TOPIC, H_QUEUE, H_PROPS, H_HOST, H_MAX,
    H_ENCODED, H_LOG, H_FILES_OF, H_FILES, H_FD, H_TABLE, H_KEY, H_POS, H_SIZE, H_OFFSET,
    H_WROTE, H_NOW, H_FLAG, H_END, H_NEXT, H_REQUEST, H_PENDING, H_SCHEDULED, H_IDS,
    H_BYTES, H_TOOK, H_STATS, H_MSG, H_FILE, H_COUNT_OF, H_JOINED, H_COUNT
};

/* Whether the store takes a plain put now: a master's, not read-only (broker, store and config
 * held in h). */
static int
store_takes(PyObject *send, PyObject **h)
{
    return (h[H_BROKER] = attr(send, s_broker)) != NULL
           && (h[H_STORE] = attr(h[H_BROKER], s_store)) != NULL
           && (h[H_CONFIG] = attr(h[H_STORE], s_config)) != NULL
           && (h[H_READONLY] = attr(h[H_STORE], s_readonly)) == Py_False
           && (h[H_ROLE] = attr(h[H_CONFIG], s_brokerRole)) != NULL && bound[B_SLAVE] != NULL
           && PyObject_RichCompareBool(h[H_ROLE], bound[B_SLAVE], Py_EQ) == 0
           && (h[H_HOST] = attr(h[H_STORE], s_store_host)) != NULL
           && (h[H_MAX] = attr(h[H_CONFIG], s_maxMessageSize)) != NULL;
}

/* Whether the store takes a plain put of `msg` (a single send's, or the first of a list): its
 * topic, queue and properties held in h. */
static int
plain_put(PyObject *msg, PyObject **h, long long *sys_flag)
{
    Py_ssize_t where[M_COUNT];
    const Py_ssize_t *at = fields_at(&message_kept, msg, message_fields, M_COUNT, where);
    if ((h[H_TOPIC] = attr_field(msg, at, M_TOPIC, s_topic)) == NULL
        || !PyUnicode_CheckExact(h[H_TOPIC])
        || (h[H_QUEUE] = attr_field(msg, at, M_QUEUE_ID, s_queue_id)) == NULL
        || !PyLong_CheckExact(h[H_QUEUE])
        || (h[H_PROPS] = attr_field(msg, at, M_PROPERTIES, s_properties)) == NULL
        || !PyDict_CheckExact(h[H_PROPS])
        || bound[B_DELAY] == NULL || PyDict_Contains(h[H_PROPS], bound[B_DELAY]) != 0
        || !int_field(msg, at, M_SYS_FLAG, s_sys_flag, I32, sys_flag)
        || (*sys_flag & 0xC) /* TRANSACTION_MASK */)
        return 0;
    return 1;
}

/* CommitLog.append's mf.zero_ahead(end), for an append that ends past the file's zero_mark
 * (every 128 KiB appended under batches: they fell back to the original each time, a tenth of
 * the batches of 32). 0 (no exception) when it raised: the original tries again and words the
 * refusal; the zeros it wrote lie past the write position, where a record's bytes will go. */
static int
zeroed_ahead(PyObject *mf, long long end)
{
    PyObject *at = PyLong_FromLongLong(end), *r = NULL;
    if (at != NULL)
        r = PyObject_CallMethodOneArg(mf, s_zero_ahead, at);
    Py_XDECREF(at);
    Py_XDECREF(r);
    if (r == NULL)
        PyErr_Clear();
    return r != NULL;
}

/* The CommitLog's last file, when the record of `len` bytes fits it (held in h[H_FILE]), zeros
 * written ahead of it where the original writes them; its place in *pos and *wrote, the
 * queue's next offset in *queue_offset. */
static PyObject *
last_file_for(PyObject **h, Py_ssize_t len, long long *pos, long long *wrote,
              long long *queue_offset)
{
    long long size, zeros, start, blank;
    if ((h[H_LOG] = attr(h[H_STORE], s_commitlog)) == NULL
        || (h[H_FILES_OF] = attr(h[H_LOG], s_files)) == NULL
        || (h[H_FILES] = attr(h[H_FILES_OF], s_files)) == NULL || !PyList_CheckExact(h[H_FILES])
        || PyList_GET_SIZE(h[H_FILES]) == 0)
        return NULL;
    PyObject *mf = h[H_FILE] = Py_NewRef(PyList_GET_ITEM(h[H_FILES],
                                                         PyList_GET_SIZE(h[H_FILES]) - 1));
    Py_ssize_t where[MF_COUNT];
    const Py_ssize_t *at = fields_at(&mapped_file_kept, mf, mapped_file_fields, MF_COUNT, where);
    if (!int_field(mf, at, MF_FILE_SIZE, s_file_size, 0, PY_SSIZE_T_MAX, &size)
        || !int_field(mf, at, MF_WROTE, s_wrote_position, 0, PY_SSIZE_T_MAX, pos)
        || !int_field(mf, at, MF_ZERO_MARK, s_zero_mark, I64, &zeros)
        || !int_field(mf, at, MF_FROM, s_file_from_offset, 0, LLONG_MAX / 2, &start)
        || !int_in(bound[B_END_FILE_MIN_BLANK_LENGTH], 0, 1 << 20, &blank)
        || *pos > size || size - *pos < len + blank
        || (h[H_FD] = attr_field(mf, at, MF_FD, s_fd)) == NULL || !PyLong_CheckExact(h[H_FD])
        || (h[H_TABLE] = attr(h[H_LOG], s_topic_queue_table)) == NULL
        || !PyDict_CheckExact(h[H_TABLE])
        || (h[H_KEY] = PyTuple_Pack(2, h[H_TOPIC], h[H_QUEUE])) == NULL
        || (*pos + len > zeros && !zeroed_ahead(mf, *pos + len)))
        return NULL;
    PyObject *next = PyDict_GetItemWithError(h[H_TABLE], h[H_KEY]);
    *queue_offset = 0;
    if ((next == NULL && PyErr_Occurred()) || (next && !int_in(next, 0, LLONG_MAX - 1, queue_offset)))
        return NULL;
    *wrote = start + *pos;
    if ((h[H_POS] = PyLong_FromLongLong(*pos)) == NULL
        || (h[H_SIZE] = PyLong_FromLongLong(size)) == NULL
        || (h[H_OFFSET] = PyLong_FromLongLong(*queue_offset)) == NULL
        || (h[H_WROTE] = PyLong_FromLongLong(*wrote)) == NULL)
        return NULL;
    return mf;
}

/* StoreStats.put(messages, size, elapsed_ns)'s counts, from the same attributes
 * (storage/stats.py): 1 counted, 0 not this shape (nothing counted, no exception), -1 an
 * error raised. */
static int
store_counts(PyObject *stats, long long messages, long long size, long long took)
{
    static const char *const names[3] = {"put_times", "put_bytes", "put_ms"};
    static SlotsClass kept;
    long long times, bytes, n = 0;
    PyObject *by_ms = NULL, *ms = NULL;
    int rc = 0;
    Py_ssize_t where[3];
    const Py_ssize_t *at = fields_at(&kept, stats, names, 3, where);
    if (!int_field(stats, at, 0, s_put_times, 0, LLONG_MAX - messages, &times)
        || !int_field(stats, at, 1, s_put_bytes, 0, LLONG_MAX - size, &bytes)
        || (by_ms = field(stats, at, 2, s_put_ms)) == NULL || !PyDict_CheckExact(by_ms)
        || (ms = PyLong_FromLongLong(took / 1000000)) == NULL)
        goto done;
    PyObject *held = PyDict_GetItemWithError(by_ms, ms);
    if ((held == NULL && PyErr_Occurred()) || (held != NULL && !int_in(held, 0, LLONG_MAX - 1, &n)))
        goto done;
    PyObject *next = PyLong_FromLongLong(n + 1);
    rc = next != NULL && set_int_field(stats, at, 0, s_put_times, times + messages) == 0
         && set_int_field(stats, at, 1, s_put_bytes, bytes + size) == 0
         && PyDict_SetItem(by_ms, ms, next) == 0 ? 1 : -1;
    Py_XDECREF(next);
done:
    if (rc == 0)
        PyErr_Clear();
    Py_XDECREF(by_ms);
    Py_XDECREF(ms);
    return rc;
}

/* BrokerStats.put(topic, messages, size)'s counts into the topic's items kept in _topic_put
 * (broker/stats.py): as store_counts; a topic with no items yet is the original's. */
static int
topic_counts(PyObject *stats, PyObject *topic, long long messages, long long size)
{
    long long nums, nums_times, sizes, sizes_times, total;
    PyObject *kept = PyObject_GetAttr(stats, s_topic_put), *items;
    int rc = 0;
    if (kept == NULL || !PyDict_CheckExact(kept)
        || (items = PyDict_GetItemWithError(kept, topic)) == NULL || !PyTuple_CheckExact(items)
        || PyTuple_GET_SIZE(items) != 3)
        goto done;
    static const char *const names[2] = {"value", "times"};  /* broker.stats.StatsItem */
    static SlotsClass item_kept;
    PyObject *const *it = &PyTuple_GET_ITEM(items, 0);
    Py_ssize_t where[3][2];
    const Py_ssize_t *at[3];
    for (int i = 0; i < 3; i++)
        at[i] = fields_at(&item_kept, it[i], names, 2, where[i]);
    if (!int_field(it[0], at[0], 0, s_value, 0, LLONG_MAX - messages, &nums)
        || !int_field(it[0], at[0], 1, s_times, 0, LLONG_MAX - 1, &nums_times)
        || !int_field(it[1], at[1], 0, s_value, 0, LLONG_MAX - size, &sizes)
        || !int_field(it[1], at[1], 1, s_times, 0, LLONG_MAX - 1, &sizes_times)
        || !int_field(it[2], at[2], 0, s_value, 0, LLONG_MAX - messages, &total))
        goto done;
    /* Three items of three sets (BrokerStats.put makes them), never one object twice: all
     * read before any is written counts as the original's increments in turn. */
    rc = set_int_field(it[0], at[0], 0, s_value, nums + messages) == 0
         && set_int_field(it[0], at[0], 1, s_times, nums_times + 1) == 0
         && set_int_field(it[1], at[1], 0, s_value, sizes + size) == 0
         && set_int_field(it[1], at[1], 1, s_times, sizes_times + 1) == 0
         && set_int_field(it[2], at[2], 0, s_value, total + messages) == 0 ? 1 : -1;
done:
    if (rc == 0)
        PyErr_Clear();
    Py_XDECREF(kept);
    return rc;
}

/* Appended(wrote_offset, wrote_bytes, queue_offset, store_timestamp) of the put held in h. */
static PyObject *
appended_of(PyObject **h)
{
    static const char *const names[4] = {"wrote_offset", "wrote_bytes", "queue_offset",
                                         "store_timestamp"};
    static SlotsClass kept;
    if (bound[B_APPENDED] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "speedups: Appended is not bound");
        return NULL;
    }
    PyObject *fields[4] = {h[H_WROTE], h[H_BYTES], h[H_OFFSET], h[H_NOW]};
    return construct(&kept, bound[B_APPENDED], names, 4, fields);
}

/* `request` (taken) appended to the store's pending requests (h[H_PENDING]) for the reput;
 * 0, or -1 with the error raised. */
static int
pend(PyObject **h, PyObject *request)
{
    h[H_REQUEST] = request;
    PyObject *r = request != NULL ? PyObject_CallMethodOneArg(h[H_PENDING], s_append, request)
                                  : NULL;
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* The reput's DispatchBatch of the batch put held in h, pended. */
static int
pend_batch(PyObject **h, PyObject *sizes, PyObject *codes, PyObject *keys, PyObject *offsets,
           PyObject *flag)
{
    static const char *const names[10] = {"topic", "queue_id", "commit_log_offset", "sizes",
                                          "tags_codes", "store_timestamp", "queue_offset",
                                          "keys", "key_offsets", "sys_flag"};
    static SlotsClass kept;
    if (bound[B_DISPATCH_BATCH_CLASS] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "speedups: DispatchBatch is not bound");
        return -1;
    }
    PyObject *v[10] = {h[H_TOPIC], h[H_QUEUE], h[H_WROTE], sizes, codes, h[H_NOW],
                       h[H_OFFSET], keys, offsets, flag};
    return pend(h, construct(&kept, bound[B_DISPATCH_BATCH_CLASS], names, 10, v));
}

/* The reput's requests of a put of several messages, as the store's _dispatch_of makes them:
 * one DispatchBatch when the messages share their sysFlag (always, for a remoting batch), else
 * the original's, message by message. 0, or -1 with the error raised. */
static int
batch_requests(PyObject **h, PyObject *messages, PyObject *sizes, PyObject *levels)
{
    PyObject *args[6] = {h[H_TOPIC], messages, h[H_WROTE], sizes, h[H_NOW], levels};
    PyObject *got = batch_dispatch(NULL, args, 6), *r = NULL, *appended = NULL;
    if (got == NULL)
        return -1;
    int rc = -1;
    if (!PyTuple_CheckExact(got) || PyTuple_GET_SIZE(got) != 4) {
        PyErr_SetString(PyExc_RuntimeError, "speedups: batch_dispatch gave no 4-tuple");
    } else if (PyTuple_GET_ITEM(got, 3) == Py_None) {  /* sysFlags differ */
        if ((appended = appended_of(h)) != NULL
            && (r = PyObject_CallMethodObjArgs(h[H_STORE], s_dispatch_of, messages, sizes,
                                               appended, NULL)) != NULL) {
            PyObject *done = PyObject_CallMethodOneArg(h[H_PENDING], s_extend, r);
            rc = done != NULL ? 0 : -1;
            Py_XDECREF(done);
        }
    } else {
        PyObject *const *g = &PyTuple_GET_ITEM(got, 0);
        rc = pend_batch(h, sizes, g[0], g[1], g[2], g[3]);
    }
    Py_DECREF(got);
    Py_XDECREF(r);
    Py_XDECREF(appended);
    return rc;
}

/* The reput's request(s) of the put held in h: of `messages`, or of a batch's body (`batch`,
 * read by batch_records: its one entry's request is dispatch_request's tuple, as the store's
 * put of a single message makes it). */
static int
requests(PyObject **h, PyObject *messages, BatchPut *batch, PyObject *sizes, PyObject *flag)
{
    Py_ssize_t n = PyList_GET_SIZE(sizes);
    if (batch != NULL && n == 1)
        return pend(h, request_tuple(h[H_TOPIC], h[H_QUEUE], h[H_WROTE],
                                     PyList_GET_ITEM(sizes, 0), PyList_GET_ITEM(batch->codes, 0),
                                     h[H_NOW], h[H_OFFSET], batch->keys, flag));
    if (batch != NULL) {
        PyObject *offsets = batch_key_offsets(batch, PyLong_AsLongLong(h[H_WROTE]));
        int rc = offsets != NULL ? pend_batch(h, sizes, batch->codes, batch->keys, offsets, flag)
                                 : -1;
        Py_XDECREF(offsets);
        return rc;
    }
    PyObject *levels = PyObject_GetAttr(h[H_STORE], s_delay_levels);
    if (levels == NULL)
        return -1;
    int rc;
    if (n == 1) {
        PyObject *req_args[9] = {h[H_TOPIC], h[H_QUEUE], h[H_WROTE], PyList_GET_ITEM(sizes, 0),
                                 h[H_PROPS], h[H_NOW], h[H_OFFSET], flag, levels};
        rc = pend(h, dispatch_request(NULL, req_args, 9));
    } else {
        rc = batch_requests(h, messages, sizes, levels);
    }
    Py_DECREF(levels);
    return rc;
}

/* After the write: the file's and the queue's new ends, the reput's request(s), the counts. */
static int
noted(PyObject **h, PyObject *mf, PyObject *messages, BatchPut *batch, PyObject *sizes,
      PyObject *sent_topic, long long queue_offset, long long sys_flag, Py_ssize_t len,
      long long began)
{
    Py_ssize_t n = PyList_GET_SIZE(sizes);
    PyObject *flag = PyLong_FromLongLong(sys_flag), *r;
    Py_ssize_t where[MF_COUNT];
    const Py_ssize_t *at = fields_at(&mapped_file_kept, mf, mapped_file_fields, MF_COUNT, where);
    h[H_FLAG] = flag;
    if (flag == NULL || set_field(mf, at, MF_WROTE, s_wrote_position, h[H_END]) < 0
        || (h[H_NEXT] = PyLong_FromLongLong(queue_offset + n)) == NULL
        || PyDict_SetItem(h[H_TABLE], h[H_KEY], h[H_NEXT]) < 0
        || (h[H_BYTES] = PyLong_FromSsize_t(len)) == NULL
        || (h[H_PENDING] = PyObject_GetAttr(h[H_STORE], s_pending)) == NULL
        || requests(h, messages, batch, sizes, flag) < 0
        || PyObject_SetAttr(h[H_STORE], s_last_store_timestamp, h[H_NOW]) < 0
        || (h[H_SCHEDULED] = PyObject_GetAttr(h[H_STORE], s_reput_scheduled)) == NULL)
        return -1;
    int scheduled = PyObject_IsTrue(h[H_SCHEDULED]);
    if (scheduled < 0)
        return -1;
    if (!scheduled) {
        if ((r = PyObject_CallMethodNoArgs(h[H_STORE], s_schedule_reput)) == NULL)
            return -1;
        Py_DECREF(r);
    }
    long long took = clock_ns(CLOCK_MONOTONIC) - began;
    int rc;
    if ((h[H_COUNT_OF] = PyLong_FromSsize_t(n)) == NULL
        || (h[H_STATS] = PyObject_GetAttr(h[H_STORE], s_stats)) == NULL)
        return -1;
    rc = store_counts(h[H_STATS], n, len, took);
    if (rc == 0) {  /* the original counts what is not as expected */
        if ((h[H_TOOK] = PyLong_FromLongLong(took)) == NULL)
            return -1;
        PyObject *counts[4] = {h[H_STATS], h[H_COUNT_OF], h[H_BYTES], h[H_TOOK]};
        rc = (r = PyObject_VectorcallMethod(s_put, counts, 4, NULL)) != NULL ? 1 : -1;
        Py_XDECREF(r);
    }
    if (rc < 0)
        return -1;
    Py_SETREF(h[H_STATS], PyObject_GetAttr(h[H_BROKER], s_stats));
    if (h[H_STATS] == NULL || (rc = topic_counts(h[H_STATS], sent_topic, n, len)) < 0)
        return -1;
    if (rc == 0) {
        PyObject *counts[4] = {h[H_STATS], sent_topic, h[H_COUNT_OF], h[H_BYTES]};
        if ((r = PyObject_VectorcallMethod(s_put, counts, 4, NULL)) == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* The put's result as the original's put_nowait gives it: PutResult(PUT_OK, Appended(...),
 * ids); a new reference, or NULL with the error raised. */
static PyObject *
put_result(PyObject **h)
{
    static const char *const result_names[4] = {"status", "appended", "msg_ids", "remark"};
    static SlotsClass result_kept;
    if (bound[B_PUT_RESULT] == NULL || bound[B_PUT_OK] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "speedups: PutResult is not bound");
        return NULL;
    }
    PyObject *appended = appended_of(h);
    PyObject *remark = PyUnicode_New(0, 0), *out = NULL;
    if (appended != NULL && remark != NULL) {
        PyObject *result[4] = {bound[B_PUT_OK], appended, h[H_IDS], remark};
        out = construct(&result_kept, bound[B_PUT_RESULT], result_names, 4, result);
    }
    Py_XDECREF(appended);
    Py_XDECREF(remark);
    return out;
}

/* The put of a plain send, one message or a batch, and its answer (args as stored_at_once's;
 * for a batch from handle_send, its messages NULL and `batch` given): the answer's frame (None
 * for a oneway send), and in *result, when it is asked for, the PutResult the original's
 * put_nowait gives. NULL: with *written set, an error raised after the records were written;
 * else not this path (nothing done, no exception). */
static PyObject *
put_plain(PyObject *const *args, BatchPut *batch, PyObject **result, int *written)
{
    long long began = clock_ns(CLOCK_MONOTONIC), sys_flag, cmd_flag, pos, wrote, queue_offset;
    long long max_body, queue_id;
    PyObject *h[H_COUNT] = {0}, *out = NULL, *mf = NULL, *records, *sizes;
    PyObject *messages = args[4];
    Py_ssize_t where[CMD_COUNT];
    const Py_ssize_t *cmd_at = fields_at(&command_kept, args[1], command_fields, CMD_COUNT,
                                         where);
    *written = 0;
    if (!PyUnicode_CheckExact(args[2]) || !PyLong_CheckExact(args[3])
        || !int_field(args[1], cmd_at, CMD_FLAG, s_flag, I32, &cmd_flag)
        || !store_takes(args[0], h))
        goto done;
    if (batch != NULL) {
        h[H_TOPIC] = Py_NewRef(args[2]);
        h[H_QUEUE] = Py_NewRef(args[3]);
        if (!int_in(h[H_MAX], I64, &max_body) || !int_in(args[3], I32, &queue_id)
            || !batch_records(batch, args[2], queue_id, h[H_HOST], max_body))
            goto done;
        records = batch->records;
        sizes = batch->sizes;
        sys_flag = batch->sys_flag;
    } else {
        if (!PyList_CheckExact(messages) || PyList_GET_SIZE(messages) < 1)
            goto done;
        h[H_MSG] = Py_NewRef(PyList_GET_ITEM(messages, 0));
        if (!plain_put(h[H_MSG], h, &sys_flag))
            goto done;
        PyObject *encode_args[3] = {messages, h[H_HOST], h[H_MAX]};
        h[H_ENCODED] = encode_messages(NULL, encode_args, 3);
        if (h[H_ENCODED] == NULL || !PyTuple_CheckExact(h[H_ENCODED])
            || PyTuple_GET_SIZE(h[H_ENCODED]) != 2)
            goto done;
        records = PyTuple_GET_ITEM(h[H_ENCODED], 0);
        sizes = PyTuple_GET_ITEM(h[H_ENCODED], 1);
        if (!PyByteArray_CheckExact(records) || !PyList_CheckExact(sizes)
            || PyList_GET_SIZE(sizes) != PyList_GET_SIZE(messages))
            goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(sizes);
    Py_ssize_t len = PyByteArray_GET_SIZE(records);
    if ((mf = last_file_for(h, len, &pos, &wrote, &queue_offset)) == NULL)
        goto done;
    long long now = clock_ns(CLOCK_REALTIME) / 1000000;
    if ((h[H_NOW] = PyLong_FromLongLong(now)) == NULL)
        goto done;
    PyObject *place_args[8] = {h[H_FD], h[H_POS], h[H_SIZE], records, sizes, h[H_OFFSET],
                               h[H_WROTE], h[H_NOW]};
    if ((h[H_END] = place_records(NULL, place_args, 8)) == NULL)
        goto done;
    *written = 1;
    if (noted(h, mf, messages, batch, sizes, args[2], queue_offset, sys_flag, len, began) < 0)
        goto done;
    PyObject *ids_args[3] = {h[H_HOST], h[H_WROTE], sizes};
    if ((h[H_IDS] = offset_msg_ids(NULL, ids_args, 3)) == NULL || !PyList_CheckExact(h[H_IDS])
        || PyList_GET_SIZE(h[H_IDS]) != n
        || (result != NULL && (*result = put_result(h)) == NULL))
        goto done;
    /* a batch's answer names every id, comma-separated (SendProcessor._respond) */
    h[H_JOINED] = n == 1 ? Py_NewRef(PyList_GET_ITEM(h[H_IDS], 0))
                         : PyUnicode_Join(s_COMMA, h[H_IDS]);
    if (h[H_JOINED] == NULL)
        goto done;
    if (cmd_flag & 0x2) {  /* FLAG_ONEWAY: stored, and no answer */
        out = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *opaque = NULL, *serialize = NULL, *code = NULL;
    if ((opaque = field(args[1], cmd_at, CMD_OPAQUE, s_opaque)) != NULL
        && (serialize = field(args[1], cmd_at, CMD_SERIALIZE, s_serialize_type)) != NULL
        && (code = PyLong_FromLong(0)) != NULL) {  /* ResponseCode.SUCCESS */
        PyObject *answer_args[6] = {code, opaque, serialize, h[H_JOINED], args[3],
                                    h[H_OFFSET]};
        out = stored_answer(NULL, answer_args, 6);
    }
    Py_XDECREF(opaque);
    Py_XDECREF(serialize);
    Py_XDECREF(code);
done:
    for (int i = 0; i < H_COUNT; i++)
        Py_XDECREF(h[i]);
    if (out == NULL && result != NULL && *result != NULL)
        Py_CLEAR(*result);
    if (out == NULL && *written && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "speedups: a stored message got no ids");
    if (out == NULL && !*written)
        PyErr_Clear();
    return out;
}

/* stored_at_once(send, cmd, topic, queue_id, messages) -> the answer's frame (None for a
 * oneway send), as the original gives it. */
PyObject *
stored_at_once(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int written = 0;
    PyObject *out = nargs == 5 ? put_plain(args, NULL, NULL, &written) : NULL;
    if (out != NULL || written)
        return out;  /* the answer, or an error raised after the write */
    return fallback(B_STORED_AT_ONCE, args, nargs, NULL);
}

/* -- handle_send: the request's checks and its message before the put ----------------------- */

/* d[key] (borrowed), `key` an interned str; NULL when absent (no exception). */
static PyObject *
item(PyObject *d, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

/* Whether `send` (its broker) takes a send now: a master not told to stop writing. 1 when
 * it answers as it stores, 2 when a put may wait (SYNC_FLUSH, a synchronous slave:
 * HAService.may_wait), 0 when it does not take it. */
static int
broker_takes(PyObject *send, PyObject **broker, PyObject **config)
{
    long long perm;
    PyObject *ha = NULL, *waits = NULL, *role = NULL;
    int ok = 0;
    if ((*broker = attr(send, s_broker)) == NULL || (*config = attr(*broker, s_config)) == NULL
        || (role = attr(*config, s_brokerRole)) == NULL || bound[B_SLAVE] == NULL
        || PyObject_RichCompareBool(role, bound[B_SLAVE], Py_EQ) != 0
        || !int_attr(*config, s_brokerPermission, I32, &perm) || !(perm & 2) /* PERM_WRITE */
        || (ha = attr(*broker, s_ha)) == NULL
        || (waits = PyObject_CallMethodNoArgs(ha, s_may_wait)) == NULL)
        goto done;
    ok = waits == Py_False ? 1 : waits == Py_True ? 2 : 0;
done:
    PyErr_Clear();
    Py_XDECREF(ha);
    Py_XDECREF(waits);
    Py_XDECREF(role);
    return ok;
}

/* A queue below `writable` (> 0) for a send that named none (-1), picked as checked_topic
 * picks it, from the same random.random(): 1, or 0 (no exception) when it cannot be. */
static int
any_queue(long long writable, long long *queue_id)
{
    PyObject *r;
    if (writable <= 0 || bound[B_RANDOM] == NULL
        || (r = PyObject_CallNoArgs(bound[B_RANDOM])) == NULL)
        return 0;
    double x = PyFloat_Check(r) ? PyFloat_AS_DOUBLE(r) : -1.0;
    Py_DECREF(r);
    if (!(x >= 0.0 && x < 1.0))
        return 0;
    *queue_id = (long long)(x * (double)writable);
    return 1;
}

/* The topic's config when checked_topic would pass the send without a word: a topic that
 * passed validation before, sendable, configured, writable, and a queue id (`queue`, the
 * header's text) in range (a new reference), the queue in *queue_id. */
static PyObject *
writable_topic(PyObject *broker, PyObject *queue, PyObject *topic, long long *queue_id)
{
    PyObject *topics = NULL, *table = NULL, *tc = NULL;
    long long perm, writable, readable;
    if (bound[B_VALID_TOPICS] == NULL || !PySet_Check(bound[B_VALID_TOPICS])
        || bound[B_NOT_SENDABLE] == NULL || !PySet_Check(bound[B_NOT_SENDABLE])
        || PySet_Contains(bound[B_VALID_TOPICS], topic) != 1
        || PySet_Contains(bound[B_NOT_SENDABLE], topic) != 0
        || (topics = attr(broker, s_topics)) == NULL || (table = attr(topics, s_table)) == NULL
        || !PyDict_CheckExact(table))
        goto no;
    tc = PyDict_GetItemWithError(table, topic);
    if (tc == NULL)
        goto no;
    Py_INCREF(tc);
    if (!int_attr(tc, s_perm, I32, &perm) || !(perm & 2) /* PERM_WRITE */
        || !int_attr(tc, s_writeQueueNums, I32, &writable)
        || !int_attr(tc, s_readQueueNums, I32, &readable)
        || !decimal_of(queue, queue_id) || *queue_id < -1 || *queue_id > 2147483647LL
        || (*queue_id >= writable && *queue_id >= readable)
        || (*queue_id == -1 && !any_queue(writable, queue_id)))
        Py_CLEAR(tc);
no:
    PyErr_Clear();
    Py_XDECREF(topics);
    Py_XDECREF(table);
    return tc;
}

/* What a header's batch field (NULL: absent) says as handle reads it: SINGLE, BATCH ("true"
 * or "1", whatever the case), or 0 for anything but ASCII text (the original's to read). */
enum { SINGLE = 1, BATCH = 2 };

static int
send_kind(PyObject *batch)
{
    if (batch == NULL)
        return SINGLE;
    if (!PyUnicode_CheckExact(batch) || !PyUnicode_IS_ASCII(batch))
        return 0;
    const char *s = (const char *)PyUnicode_DATA(batch);
    Py_ssize_t n = PyUnicode_GET_LENGTH(batch);
    int batched = n == 1 ? s[0] == '1' : n == 4 && strncasecmp(s, "true", 4) == 0;
    return batched ? BATCH : SINGLE;
}

/* The names a send header's fields go by (send.header_names: V2's one letters, else V1's),
 * a tuple of str; NULL when they are not bound as expected. */
static PyObject *
header_names(PyObject *h)
{
    PyObject *n = bound[item(h, s_b) != NULL && item(h, s_topic) == NULL ? B_V2 : B_V1];
    if (n == NULL || !PyTuple_Check(n) || PyTuple_GET_SIZE(n) != 14)
        return NULL;
    for (int i = 0; i < 14; i++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(n, i)))
            return NULL;
    return n;
}

enum { NAME_TOPIC = 1, NAME_QUEUE_ID = 4, NAME_BATCH = 12 };  /* send.Names' order */

/* handle_send(send, cmd, conn) -> the answer, as SendProcessor.handle gives it. Done here: a
 * send of one message (not a transaction's half) or a batch (batch_head's, put from its body
 * by batch_records) to a configured topic's queue, from a connection whose born host is known;
 * where the put waits (SYNC_FLUSH, SYNC_MASTER), the answer is handed to
 * SendProcessor.answered, with the producer's WAIT, which gives it once the wait is over. */
PyObject *
handle_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *broker = NULL, *config = NULL, *tc = NULL, *name = NULL, *qid = NULL;
    PyObject *conn_attrs = NULL, *cluster = NULL, *body = NULL, *msg = NULL, *props = NULL;
    PyObject *messages = NULL, *h = NULL, *out = NULL, *result = NULL, *names, *topic;
    PyObject *host;
    BatchPut batch = {0};
    long long queue_id;
    int takes = 0, written = 0, kind = 0, wait = 1;
    Py_ssize_t where[CMD_COUNT];
    const Py_ssize_t *cmd_at = nargs == 3 ? fields_at(&command_kept, args[1], command_fields,
                                                      CMD_COUNT, where) : NULL;
    if (nargs != 3 || (h = attr_field(args[1], cmd_at, CMD_EXT, s_ext_fields)) == NULL
        || !PyDict_CheckExact(h)
        || (names = header_names(h)) == NULL
        || (topic = item(h, PyTuple_GET_ITEM(names, NAME_TOPIC))) == NULL
        || !PyUnicode_CheckExact(topic)
        || !(kind = send_kind(item(h, PyTuple_GET_ITEM(names, NAME_BATCH))))
        || !(takes = broker_takes(args[0], &broker, &config))
        || (tc = writable_topic(broker, item(h, PyTuple_GET_ITEM(names, NAME_QUEUE_ID)), topic,
                                &queue_id)) == NULL
        || (name = attr(tc, s_topicName)) == NULL || !PyUnicode_CheckExact(name)
        || (conn_attrs = attr(args[2], s_attrs)) == NULL || !PyDict_CheckExact(conn_attrs)
        || (host = item(conn_attrs, s_born_host)) == NULL || !PyBytes_CheckExact(host)
        || (cluster = attr(config, s_brokerClusterName)) == NULL
        || (body = attr_field(args[1], cmd_at, CMD_BODY, s_body)) == NULL
        || (qid = PyLong_FromLongLong(queue_id)) == NULL)
        goto done;
    if (kind == BATCH) {
        if (!batch_head(h, names, name, body, host, cluster, &batch))
            goto done;
    } else {
        PyObject *message_args[7] = {h, names, name, qid, body, host, cluster};
        if ((msg = sent_message(NULL, message_args, 7)) == NULL
            || (props = attr(msg, s_properties)) == NULL || !PyDict_CheckExact(props)
            || item(props, s_TRAN_MSG) != NULL || (messages = PyList_New(1)) == NULL)
            goto done;
        PyList_SET_ITEM(messages, 0, Py_NewRef(msg));
    }
    PyObject *put_args[5] = {args[0], args[1], name, qid, messages};
    out = put_plain(put_args, kind == BATCH ? &batch : NULL, takes == 2 ? &result : NULL,
                    &written);
    if (out != NULL && takes == 2) {  /* the answer when what the put waits for is done */
        wait = kind == BATCH ? batch.wait : wait_store_ok(item(props, s_WAIT));
        PyObject *tail[7] = {args[0], args[1], args[2], result, wait ? Py_True : Py_False, qid,
                             out};
        Py_SETREF(out, wait < 0 ? NULL : PyObject_VectorcallMethod(s_answered, tail, 7, NULL));
    }
done:
    batch_put_clear(&batch);
    Py_XDECREF(broker);
    Py_XDECREF(config);
    Py_XDECREF(tc);
    Py_XDECREF(name);
    Py_XDECREF(qid);
    Py_XDECREF(conn_attrs);
    Py_XDECREF(cluster);
    Py_XDECREF(body);
    Py_XDECREF(msg);
    Py_XDECREF(props);
    Py_XDECREF(messages);
    Py_XDECREF(h);
    Py_XDECREF(result);
    if (out != NULL || written)
        return out;  /* the answer, or an error raised after the write */
    PyErr_Clear();
    return fallback(B_HANDLE_SEND, args, nargs, NULL);
}
