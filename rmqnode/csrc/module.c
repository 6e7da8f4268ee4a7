/* The accelerator's module: compiled twins of the byte-level hot functions (rmqnode/speedups.py
 * binds them), defined in message.c, records.c, append.c, dispatch.c, reput.c, frames.c, json.c,
 * send.c, put.c and serve.c beside this file.
 *
 * Each function here takes the same arguments as its pure-Python original and gives the same
 * result. Only the common, well-formed case is done in C: whatever is unusual (a malformed
 * frame, a value of an unexpected type, an int out of range, a lone surrogate) is handed to
 * the pure-Python original with the caller's arguments, so every refusal is raised by the one
 * definition of it, with its exact wording. speedups.bind() gives this module those originals
 * and the few Python objects the results are built from; until one is bound, its twin always
 * falls back (and one that is never bound fails with a plain RuntimeError).
 */
#include "speedups.h"

const char *const bound_names[B_COUNT] = {
    "java_hash", "decode_properties", "decode_batch", "encode_record", "encode",
    "decode_frame", "decode_frames",
    "BatchEntry", "RemotingCommand", "LANGUAGES", "LANGUAGE_CODES", "decode_json_header",
    "encode_messages", "properties_string", "stamp_records", "index_put",
    "offset_msg_ids", "place_records", "dispatch_request",
    "integer", "int32", "batch_messages", "batch_dispatch", "queue_entries",
    "sent_message", "Message", "CLIENT_SYS_FLAGS", "stored_answer", "OUR_VERSION",
    "dispatch_plain", "stored_at_once", "DELAY", "SLAVE", "END_FILE_MIN_BLANK_LENGTH",
    "handle_send", "VALID_TOPICS", "NOT_SENDABLE", "V1", "V2", "random", "PutResult",
    "Appended", "PUT_OK", "index_in_last", "DispatchBatch", "serve_read", "FrameError",
    "debug_on",
};
PyObject *bound[B_COUNT];

/* Attribute names, interned at import. */
PyObject *s_code, *s_opaque, *s_flag, *s_remark, *s_ext_fields, *s_body, *s_language,
    *s_version, *s_serialize_type, *s_topic, *s_queue_id, *s_sys_flag, *s_born_timestamp,
    *s_born_host, *s_reconsume_times, *s_prepared_transaction_offset, *s_properties,
    *s_properties_string, *s_OTHER, *s_POP_CK, *s_PROPERTY_SEPARATOR, *s_CLUSTER, *s_WAIT,
    *s_JAVA, *s_popleft, *s_files, *s_file_from_offset, *s_file_size, *s_mm, *s_readonly,
    *s_wrote_position, *s_max_phy_end, *s_broker, *s_store, *s_config, *s_brokerRole,
    *s_maxMessageSize, *s_store_host, *s_commitlog, *s_zero_mark, *s_zero_ahead, *s_fd,
    *s_topic_queue_table,
    *s_delay_levels, *s_pending, *s_append, *s_last_store_timestamp, *s_reput_scheduled,
    *s_schedule_reput, *s_stats, *s_put, *s_brokerPermission, *s_ha, *s_may_wait, *s_topics,
    *s_table, *s_perm, *s_writeQueueNums, *s_readQueueNums, *s_topicName, *s_attrs,
    *s_brokerClusterName, *s_b, *s_e, *s_m, *s_TRAN_MSG, *s_answered, *s_index_count,
    *s_max_entries, *s_slots, *s_begin_timestamp, *s_end_phy_offset, *s_end_timestamp, *s_mf,
    *s_put_times, *s_put_bytes, *s_put_ms, *s_topic_put, *s_value, *s_times,
    *s_RETRY_PREFIX, *s_dispatch_of, *s_extend, *s_COMMA,
    *s__buf, *s_feed, *s_max_frame, *s__dispatch, *s__failed, *s__answer, *s__out, *s_dispatcher, *s_handlers, *s__on_response, *s__flush_out, *s_transport, *s_is_closing, *s_write, *s_last_active, *s_decoder, *s__bad_frame, *s_around_read, *s___enter__, *s___exit__, *s__receiving, *s_buffered_input, *s__track_input, *s_join;

static PyObject *
bind(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "sO:bind", &name, &obj))
        return NULL;
    for (int i = 0; i < B_COUNT; i++) {
        if (strcmp(name, bound_names[i]) == 0) {
            Py_INCREF(obj);
            Py_XSETREF(bound[i], obj);
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_KeyError, "nothing named %s to bind", name);
    return NULL;
}

/* The pure-Python original, called with the caller's own arguments. */
PyObject *
fallback(int which, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (bound[which] == NULL) {
        PyErr_Format(PyExc_RuntimeError, "speedups: %s is not bound", bound_names[which]);
        return NULL;
    }
    return PyObject_Vectorcall(bound[which], args, nargs, kwnames);
}

/* -- the module ------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, "bind(name, obj): a pure-Python original or a helper object."},
    {"java_hash", (PyCFunction)(void (*)(void))java_hash, METH_FASTCALL, NULL},
    {"decode_properties", (PyCFunction)(void (*)(void))decode_properties, METH_FASTCALL, NULL},
    {"decode_batch", (PyCFunction)(void (*)(void))decode_batch, METH_FASTCALL, NULL},
    {"batch_messages", (PyCFunction)(void (*)(void))batch_messages, METH_FASTCALL, NULL},
    {"sent_message", (PyCFunction)(void (*)(void))sent_message, METH_FASTCALL, NULL},
    {"encode_record", (PyCFunction)(void (*)(void))encode_record, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"encode_messages", (PyCFunction)(void (*)(void))encode_messages, METH_FASTCALL, NULL},
    {"stamp_records", (PyCFunction)(void (*)(void))stamp_records, METH_FASTCALL, NULL},
    {"place_records", (PyCFunction)(void (*)(void))place_records, METH_FASTCALL, NULL},
    {"dispatch_request", (PyCFunction)(void (*)(void))dispatch_request, METH_FASTCALL, NULL},
    {"batch_dispatch", (PyCFunction)(void (*)(void))batch_dispatch, METH_FASTCALL, NULL},
    {"queue_entries", (PyCFunction)(void (*)(void))queue_entries, METH_FASTCALL, NULL},
    {"dispatch_plain", (PyCFunction)(void (*)(void))dispatch_plain, METH_FASTCALL, NULL},
    {"stored_at_once", (PyCFunction)(void (*)(void))stored_at_once, METH_FASTCALL, NULL},
    {"handle_send", (PyCFunction)(void (*)(void))handle_send, METH_FASTCALL, NULL},
    {"index_put", (PyCFunction)(void (*)(void))index_put, METH_FASTCALL, NULL},
    {"index_in_last", (PyCFunction)(void (*)(void))index_in_last, METH_FASTCALL, NULL},
    {"serve_read", (PyCFunction)(void (*)(void))serve_read, METH_FASTCALL, NULL},
    {"instancemethod", instancemethod, METH_O,
     "instancemethod(func): func bound as a method when read from an instance."},
    {"offset_msg_ids", (PyCFunction)(void (*)(void))offset_msg_ids, METH_FASTCALL, NULL},
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"stored_answer", (PyCFunction)(void (*)(void))stored_answer, METH_FASTCALL, NULL},
    {"decode_frame", (PyCFunction)(void (*)(void))decode_frame, METH_FASTCALL, NULL},
    {"decode_frames", (PyCFunction)(void (*)(void))decode_frames, METH_FASTCALL, NULL},
    {"decode_json_header", (PyCFunction)(void (*)(void))decode_json_header, METH_FASTCALL, NULL},
    {"properties_string", (PyCFunction)(void (*)(void))properties_string, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"integer", (PyCFunction)(void (*)(void))integer, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"int32", (PyCFunction)(void (*)(void))int32, METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rmqnode._speedups",
    "Compiled twins of rmqnode's byte-level hot functions (see rmqnode/speedups.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_code, "code"}, {&s_opaque, "opaque"}, {&s_flag, "flag"}, {&s_remark, "remark"},
        {&s_ext_fields, "ext_fields"}, {&s_body, "body"}, {&s_language, "language"},
        {&s_version, "version"}, {&s_serialize_type, "serialize_type"},
        {&s_topic, "topic"}, {&s_queue_id, "queue_id"}, {&s_sys_flag, "sys_flag"},
        {&s_born_timestamp, "born_timestamp"}, {&s_born_host, "born_host"},
        {&s_reconsume_times, "reconsume_times"},
        {&s_prepared_transaction_offset, "prepared_transaction_offset"},
        {&s_properties, "properties"}, {&s_properties_string, "properties_string"},
        {&s_OTHER, "OTHER"}, {&s_POP_CK, "POP_CK"}, {&s_PROPERTY_SEPARATOR, "\x02"},
        {&s_CLUSTER, "CLUSTER"}, {&s_WAIT, "WAIT"}, {&s_JAVA, "JAVA"},
        {&s_popleft, "popleft"}, {&s_files, "files"}, {&s_file_from_offset, "file_from_offset"},
        {&s_file_size, "file_size"}, {&s_mm, "mm"}, {&s_readonly, "readonly"},
        {&s_wrote_position, "wrote_position"}, {&s_max_phy_end, "max_phy_end"},
        {&s_broker, "broker"}, {&s_store, "store"}, {&s_config, "config"},
        {&s_brokerRole, "brokerRole"}, {&s_maxMessageSize, "maxMessageSize"},
        {&s_store_host, "store_host"}, {&s_commitlog, "commitlog"}, {&s_zero_mark, "zero_mark"},
        {&s_zero_ahead, "zero_ahead"},
        {&s_fd, "fd"}, {&s_topic_queue_table, "topic_queue_table"},
        {&s_delay_levels, "delay_levels"}, {&s_pending, "_pending"}, {&s_append, "append"},
        {&s_last_store_timestamp, "last_store_timestamp"},
        {&s_reput_scheduled, "_reput_scheduled"}, {&s_schedule_reput, "_schedule_reput"},
        {&s_stats, "stats"}, {&s_put, "put"}, {&s_brokerPermission, "brokerPermission"},
        {&s_ha, "ha"}, {&s_may_wait, "may_wait"}, {&s_topics, "topics"}, {&s_table, "table"},
        {&s_perm, "perm"}, {&s_writeQueueNums, "writeQueueNums"},
        {&s_readQueueNums, "readQueueNums"}, {&s_topicName, "topicName"}, {&s_attrs, "attrs"},
        {&s_brokerClusterName, "brokerClusterName"}, {&s_b, "b"}, {&s_e, "e"}, {&s_m, "m"},
        {&s_TRAN_MSG, "TRAN_MSG"}, {&s_answered, "answered"}, {&s_index_count, "index_count"},
        {&s_max_entries, "max_entries"}, {&s_slots, "slots"},
        {&s_begin_timestamp, "begin_timestamp"}, {&s_end_phy_offset, "end_phy_offset"},
        {&s_end_timestamp, "end_timestamp"}, {&s_mf, "mf"}, {&s_put_times, "put_times"},
        {&s_put_bytes, "put_bytes"}, {&s_put_ms, "put_ms"}, {&s_topic_put, "_topic_put"},
        {&s_value, "value"}, {&s_times, "times"}, {&s_RETRY_PREFIX, "%RETRY%"},
        {&s_dispatch_of, "_dispatch_of"}, {&s_extend, "extend"}, {&s_COMMA, ","},
        {&s__buf, "_buf"}, {&s_feed, "feed"}, {&s_max_frame, "max_frame"}, {&s__dispatch,
        "_dispatch"}, {&s__failed, "_failed"}, {&s__answer, "_answer"}, {&s__out, "_out"},
        {&s_dispatcher, "dispatcher"}, {&s_handlers, "handlers"}, {&s__on_response,
        "_on_response"}, {&s__flush_out, "_flush_out"}, {&s_transport, "transport"},
        {&s_is_closing, "is_closing"}, {&s_write, "write"}, {&s_last_active, "last_active"},
        {&s_decoder, "decoder"}, {&s__bad_frame, "_bad_frame"}, {&s_around_read, "around_read"},
        {&s___enter__, "__enter__"}, {&s___exit__, "__exit__"}, {&s__receiving, "_receiving"},
        {&s_buffered_input, "buffered_input"}, {&s__track_input, "_track_input"}, {&s_join,
        "join"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return NULL;
    return PyModule_Create(&module);
}
