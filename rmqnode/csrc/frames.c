/* codec.py's twins: a frame's encoding, and the decoding of one frame or a stream of them. */
#include "speedups.h"

/* A JSON string as json.encoder.encode_basestring writes it (ensure_ascii=False), UTF-8. */
static int
buf_json_str(Buf *b, const char *s, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!buf_reserve(b, n * 6 + 2))
        return 0;
    unsigned char *o = b->p + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = c; }
        else if (c >= 0x20) *o++ = c;
        else {
            *o++ = '\\';
            switch (c) {
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u'; *o++ = '0'; *o++ = '0'; *o++ = hex[c >> 4]; *o++ = hex[c & 0xF];
            }
        }
    }
    *o++ = '"';
    b->len = o - b->p;
    return 1;
}

#define SERIALIZE_JSON 0
#define SERIALIZE_ROCKETMQ 1

/* One of extFields, as UTF-8. */
typedef struct {
    const char *k, *v;
    Py_ssize_t kn, vn;
} Field;

/* What a frame is encoded from: a RemotingCommand's attributes, or (stored_answer) values
 * with extFields given as `fields` (ext NULL). */
typedef struct {
    long long code, opaque, flag, version;
    PyObject *remark, *ext, *language, *body;
    const Field *fields;
    Py_ssize_t nfields;
} Cmd;

/* The next of c's extFields into *f: 1, 0 after the last, -1 for one that is not text (the
 * original raises). */
static int
next_field(const Cmd *c, Py_ssize_t *i, Field *f)
{
    if (c->ext == NULL) {
        if (*i >= c->nfields)
            return 0;
        *f = c->fields[(*i)++];
        return 1;
    }
    PyObject *k, *v;
    if (!PyDict_Next(c->ext, i, &k, &v))
        return 0;
    f->k = utf8_of(k, &f->kn);
    f->v = utf8_of(v, &f->vn);
    return f->k != NULL && f->v != NULL ? 1 : -1;
}


/* The attributes of a RemotingCommand; 0 when any is not of the type the encoders expect. */
static int
cmd_read(PyObject *cmd, Cmd *c, PyObject **refs)
{
    static const int which[8] = {CMD_CODE, CMD_OPAQUE, CMD_FLAG, CMD_VERSION, CMD_REMARK,
                                 CMD_EXT, CMD_LANGUAGE, CMD_BODY};
    PyObject *names[8] = {s_code, s_opaque, s_flag, s_version, s_remark, s_ext_fields, s_language,
                          s_body};
    Py_ssize_t where[CMD_COUNT];
    const Py_ssize_t *at = fields_at(&command_kept, cmd, command_fields, CMD_COUNT, where);
    for (int i = 0; i < 8; i++) {
        refs[i] = field(cmd, at, which[i], names[i]);
        if (refs[i] == NULL) {
            PyErr_Clear();
            return 0;
        }
    }
    c->remark = refs[4]; c->ext = refs[5]; c->language = refs[6]; c->body = refs[7];
    c->fields = NULL; c->nfields = 0;
    return int_in(refs[0], I64, &c->code) && int_in(refs[1], I64, &c->opaque)
           && int_in(refs[2], I64, &c->flag) && int_in(refs[3], I64, &c->version)
           && (c->remark == Py_None || PyUnicode_CheckExact(c->remark))
           && (c->ext == Py_None || PyDict_CheckExact(c->ext)) && PyUnicode_CheckExact(c->language)
           && PyBytes_CheckExact(c->body);
}

/* encode_json_header: the header JSON with extFields as text; 0 to fall back. */
static int
json_header(Buf *b, const Cmd *c)
{
    Py_ssize_t n;
    const char *s;
    if (!buf_lit(b, "{\"code\":") || !buf_int(b, c->code))
        return 0;
    if (c->ext != Py_None) {
        if (!buf_lit(b, ",\"extFields\":{"))
            return 0;
        Py_ssize_t i = 0;
        Field f;
        int more, first = 1;
        while ((more = next_field(c, &i, &f)) == 1) {
            if ((!first && !buf_lit(b, ",")) || !buf_json_str(b, f.k, f.kn) || !buf_lit(b, ":")
                || !buf_json_str(b, f.v, f.vn))
                return 0;
            first = 0;
        }
        if (more < 0 || !buf_lit(b, "}"))
            return 0;
    }
    if (!buf_lit(b, ",\"flag\":") || !buf_int(b, c->flag) || !buf_lit(b, ",\"language\":")
        || (s = utf8_of(c->language, &n)) == NULL || !buf_json_str(b, s, n)
        || !buf_lit(b, ",\"opaque\":") || !buf_int(b, c->opaque))
        return 0;
    if (c->remark != Py_None) {
        if (!buf_lit(b, ",\"remark\":") || (s = utf8_of(c->remark, &n)) == NULL
            || !buf_json_str(b, s, n))
            return 0;
    }
    return buf_lit(b, ",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":") && buf_int(b, c->version)
           && buf_lit(b, "}");
}

/* encode_binary_header; 0 to fall back. */
static int
binary_header(Buf *b, const Cmd *c)
{
    long long lang;
    PyObject *codes = bound[B_LANGUAGE_CODES];
    if (codes == NULL || !PyDict_CheckExact(codes))
        return 0;
    PyObject *l = PyDict_GetItemWithError(codes, c->language);
    if (l == NULL) {
        if (PyErr_Occurred())
            PyErr_Clear();
        l = PyDict_GetItemString(codes, "OTHER");
    }
    Py_ssize_t remark_len = 0;
    const char *remark = "";
    if (c->remark != Py_None && PyUnicode_GET_LENGTH(c->remark) > 0
        && (remark = utf8_of(c->remark, &remark_len)) == NULL)
        return 0;
    if (!int_in(l, -128, 127, &lang) || c->code < -32768 || c->code > 32767 || c->version < -32768
        || c->version > 32767 || c->opaque < -2147483648LL || c->opaque > 2147483647LL
        || c->flag < -2147483648LL || c->flag > 2147483647LL || remark_len > 2147483647LL)
        return 0;
    if (!buf_reserve(b, 22 + remark_len))
        return 0;
    unsigned char *o = b->p + b->len;
    wr16(o, (uint16_t)c->code); o[2] = (unsigned char)lang; wr16(o + 3, (uint16_t)c->version);
    wr32(o + 5, (uint32_t)c->opaque); wr32(o + 9, (uint32_t)c->flag);
    wr32(o + 13, (uint32_t)remark_len);
    memcpy(o + 17, remark, remark_len);
    Py_ssize_t ext_at = b->len + 17 + remark_len;
    b->len = ext_at + 4;
    if (c->ext != Py_None) {
        Py_ssize_t i = 0;
        Field f;
        int more;
        while ((more = next_field(c, &i, &f)) == 1) {
            if (f.kn > 32767 || f.vn > 2147483647LL)
                return 0;
            if (f.kn == 0 || f.vn == 0)
                continue;  /* Java writes neither null nor empty strings */
            if (!buf_reserve(b, 6 + f.kn + f.vn))
                return 0;
            o = b->p + b->len;
            wr16(o, (uint16_t)f.kn); memcpy(o + 2, f.k, f.kn);
            wr32(o + 2 + f.kn, (uint32_t)f.vn); memcpy(o + 6 + f.kn, f.v, f.vn);
            b->len += 6 + f.kn + f.vn;
        }
        if (more < 0)
            return 0;
    }
    Py_ssize_t ext_len = b->len - ext_at - 4;
    if (ext_len > 2147483647LL)
        return 0;
    wr32(b->p + ext_at, (uint32_t)ext_len);
    return 1;
}

/* The whole frame of `c` in serialize type `st`, length prefix included. NULL with an
 * exception set is an error (out of memory); NULL without one means "fall back". */
static PyObject *
frame_of(const Cmd *c, long long st)
{
    PyObject *out = NULL;
    Buf b;
    buf_init(&b);
    b.len = 8;  /* the prefix, written last */
    if (!(st == SERIALIZE_ROCKETMQ ? binary_header(&b, c) : json_header(&b, c)))
        goto done;
    Py_ssize_t hlen = b.len - 8, blen = PyBytes_GET_SIZE(c->body);
    if (hlen > 0xFFFFFF || 4 + hlen + blen > 2147483647LL)
        goto done;
    out = PyBytes_FromStringAndSize(NULL, b.len + blen);
    if (out == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    wr32(b.p, (uint32_t)(4 + hlen + blen));
    wr32(b.p + 4, (uint32_t)(st << 24 | hlen));
    memcpy(o, b.p, b.len);
    memcpy(o + b.len, PyBytes_AS_STRING(c->body), blen);
done:
    buf_free(&b);
    if (out == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError))
        PyErr_Clear();
    return out;
}

/* encode(cmd, serialize_type=None): the whole frame, length prefix included. */
PyObject *
encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1 || nargs > 2 || kwnames != NULL)
        return fallback(B_ENCODE, args, nargs, kwnames);
    PyObject *refs[8] = {0}, *st_obj = NULL, *out = NULL;
    Cmd c;
    long long st;
    if (nargs == 2 && args[1] != Py_None)
        st_obj = Py_NewRef(args[1]);
    else if ((st_obj = PyObject_GetAttr(args[0], s_serialize_type)) == NULL)
        PyErr_Clear();
    if (int_in(st_obj, SERIALIZE_JSON, SERIALIZE_ROCKETMQ, &st) && cmd_read(args[0], &c, refs))
        out = frame_of(&c, st);
    Py_XDECREF(st_obj);
    for (int i = 0; i < 8; i++)
        Py_XDECREF(refs[i]);
    if (out != NULL || PyErr_Occurred())
        return out;
    return fallback(B_ENCODE, args, nargs, kwnames);
}

/* stored_answer(code, opaque, serialize_type, msg_id, queue_id, queue_offset) (broker/send.py):
 * the frame encode() makes of that answer's RemotingCommand, without the command or its dict. */
PyObject *
stored_answer(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long st, queue_id, queue_offset;
    char id_text[24], offset_text[24];
    Field fields[5] = {
        {"msgId", NULL, 5, 0}, {"queueId", NULL, 7, 0}, {"queueOffset", NULL, 11, 0},
        {"MSG_REGION", "DefaultRegion", 10, 13}, {"TRACE_ON", "true", 8, 4},
    };
    Cmd c = {.flag = 1 /* FLAG_RESPONSE */, .remark = Py_None, .ext = NULL, .language = s_JAVA,
             .fields = fields, .nfields = 5};
    if (nargs != 6 || !int_in(args[0], I64, &c.code) || !int_in(args[1], I64, &c.opaque)
        || !int_in(args[2], SERIALIZE_JSON, SERIALIZE_ROCKETMQ, &st)
        || (fields[0].v = utf8_of(args[3], &fields[0].vn)) == NULL
        || !int_in(args[4], I64, &queue_id) || !int_in(args[5], I64, &queue_offset)
        || !int_in(bound[B_OUR_VERSION], I64, &c.version))
        return fallback(B_STORED_ANSWER, args, nargs, NULL);
    fields[1].v = decimal_text(id_text, queue_id);
    fields[1].vn = id_text + 24 - fields[1].v;
    fields[2].v = decimal_text(offset_text, queue_offset);
    fields[2].vn = offset_text + 24 - fields[2].v;
    PyObject *body = PyBytes_FromStringAndSize(NULL, 0);
    if (body == NULL)
        return NULL;
    c.body = body;
    PyObject *out = frame_of(&c, st);
    Py_DECREF(body);
    if (out != NULL || PyErr_Occurred())
        return out;
    return fallback(B_STORED_ANSWER, args, nargs, NULL);
}

const char *const command_fields[CMD_COUNT] = {
    [CMD_CODE] = "code", [CMD_OPAQUE] = "opaque", [CMD_FLAG] = "flag", [CMD_REMARK] = "remark",
    [CMD_EXT] = "ext_fields", [CMD_BODY] = "body", [CMD_LANGUAGE] = "language",
    [CMD_VERSION] = "version", [CMD_SERIALIZE] = "serialize_type"};
SlotsClass command_kept;

PyObject *
new_command(PyObject *t, PyObject *const items[CMD_COUNT])
{
    static SlotsClass kept;  /* construct's own: a class it takes is one of these slots alone */
    return construct(&kept, t, command_fields, CMD_COUNT, items);
}

/* decode_binary_header of a well-formed header, `body` given: NULL with an exception set is
 * an error, NULL without one means "fall back". */
static PyObject *
binary_command(const unsigned char *d, Py_ssize_t n, PyObject *body)
{
    PyObject *langs = bound[B_LANGUAGES], *cmd_type = bound[B_REMOTING_COMMAND];
    if (n < 22 || langs == NULL || cmd_type == NULL || !PyTuple_CheckExact(langs))
        return NULL;
    int16_t code = rd16(d), version = rd16(d + 3);
    int8_t language = (int8_t)d[2];
    int32_t opaque = rd32(d + 5), flag = rd32(d + 9), remark_len = rd32(d + 13);
    Py_ssize_t pos = 17;
    if (remark_len < 0 || pos + remark_len + 4 > n)
        return NULL;
    int32_t ext_len = rd32(d + pos + remark_len);
    if (ext_len < 0 || pos + remark_len + 4 + ext_len != n)
        return NULL;
    PyObject *items[9] = {0};
    PyObject *result = NULL;
    items[3] = remark_len ? PyUnicode_DecodeUTF8((const char *)d + pos, remark_len, "strict")
                          : Py_NewRef(Py_None);
    if (items[3] == NULL)
        goto refuse;
    pos += remark_len + 4;
    items[4] = ext_len ? PyDict_New() : Py_NewRef(Py_None);
    if (items[4] == NULL)
        goto error;
    while (pos < n) {
        if (pos + 2 > n)
            goto refuse;
        int16_t klen = rd16(d + pos);
        pos += 2;
        if (klen < 0 || pos + klen + 4 > n)
            goto refuse;
        Py_ssize_t kat = pos;
        pos += klen;
        int32_t vlen = rd32(d + pos);
        pos += 4;
        if (vlen < 0 || pos + vlen > n)
            goto refuse;
        PyObject *key = PyUnicode_DecodeUTF8((const char *)d + kat, klen, "strict");
        if (key == NULL)
            goto refuse;
        PyObject *value = PyUnicode_DecodeUTF8((const char *)d + pos, vlen, "strict");
        if (value == NULL) {
            Py_DECREF(key);
            goto refuse;
        }
        int rc = PyDict_SetItem(items[4], key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto error;
        pos += vlen;
    }
    items[0] = PyLong_FromLong(code);
    items[1] = PyLong_FromLong(opaque);
    items[2] = PyLong_FromLong(flag);
    items[5] = Py_NewRef(body);
    items[6] = 0 <= language && language < PyTuple_GET_SIZE(langs)
                   ? Py_NewRef(PyTuple_GET_ITEM(langs, language)) : Py_NewRef(s_OTHER);
    items[7] = PyLong_FromLong(version);
    items[8] = PyLong_FromLong(SERIALIZE_ROCKETMQ);
    for (int i = 0; i < 9; i++)
        if (items[i] == NULL)
            goto error;
    result = new_command(cmd_type, items);
    goto error;  /* the result or its error, and the items released */
refuse:
    PyErr_Clear();
error:
    for (int i = 0; i < 9; i++)
        Py_XDECREF(items[i]);
    return result;
}

/* decode_frame of a frame without its length prefix: NULL with an exception set is an
 * error, NULL without one means "fall back". */
static PyObject *
frame_command(const unsigned char *d, Py_ssize_t n)
{
    if (n < 4)
        return NULL;
    int32_t word = rd32(d);
    int st = (word >> 24) & 0xFF;
    Py_ssize_t hlen = word & 0xFFFFFF;
    if (hlen > n - 4 || (st != SERIALIZE_JSON && st != SERIALIZE_ROCKETMQ))
        return NULL;
    PyObject *body = PyBytes_FromStringAndSize((const char *)d + 4 + hlen, n - 4 - hlen);
    if (body == NULL)
        return NULL;
    PyObject *cmd;
    if (st == SERIALIZE_ROCKETMQ) {
        cmd = binary_command(d + 4, hlen, body);
    } else if ((cmd = json_command(d + 4, hlen, body)) != NULL || PyErr_Occurred()
               || bound[B_DECODE_JSON_HEADER] == NULL) {
        /* decoded in C, an error, or nothing to hand the header to */
    } else {  /* the pure-Python original, which accepts it or words the refusal */
        PyObject *header = PyBytes_FromStringAndSize((const char *)d + 4, hlen);
        cmd = header ? PyObject_Vectorcall(bound[B_DECODE_JSON_HEADER], &header, 1, NULL) : NULL;
        Py_XDECREF(header);
        if (cmd != NULL && PyObject_SetAttr(cmd, s_body, body) < 0)
            Py_CLEAR(cmd);
    }
    Py_DECREF(body);
    return cmd;
}

PyObject *
decode_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    if (nargs != 1 || PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return fallback(B_DECODE_FRAME, args, nargs, NULL);
    }
    PyObject *cmd = frame_command(view.buf, view.len);
    PyBuffer_Release(&view);
    if (cmd == NULL && !PyErr_Occurred())
        return fallback(B_DECODE_FRAME, args, nargs, NULL);
    return cmd;
}

/* decode_frames(buf, max_frame, pos=0) -> (commands, position after the last whole frame). */
PyObject *
decode_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long max_frame, pos = 0;
    Py_buffer view;
    if (nargs < 2 || nargs > 3 || !int_in(args[1], I64, &max_frame)
        || (nargs == 3 && !int_in(args[2], 0, PY_SSIZE_T_MAX, &pos))
        || PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return fallback(B_DECODE_FRAMES, args, nargs, NULL);
    }
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len;
    PyObject *out = PyList_New(0);
    int stopped = 0;  /* at an anomaly the pure original goes on from `pos` */
    while (out != NULL && n - pos >= 4) {
        long long total = rd32(d + pos);
        if (total < 4 || total + 4 > max_frame) {
            stopped = 1;
            break;
        }
        if (n - pos - 4 < total)
            break;
        PyObject *cmd = frame_command(d + pos + 4, (Py_ssize_t)total);
        if (cmd == NULL) {
            if (PyErr_Occurred())
                Py_CLEAR(out);
            else
                stopped = 1;
            break;
        }
        int rc = PyList_Append(out, cmd);
        Py_DECREF(cmd);
        if (rc < 0)
            Py_CLEAR(out);
        pos += 4 + total;
    }
    PyBuffer_Release(&view);
    if (out == NULL)
        return NULL;
    if (stopped) {
        PyObject *rest_args[3] = {args[0], args[1], PyLong_FromLongLong(pos)};
        PyObject *rest = rest_args[2] ? fallback(B_DECODE_FRAMES, rest_args, 3, NULL) : NULL;
        Py_XDECREF(rest_args[2]);
        if (rest == NULL || !PyTuple_CheckExact(rest) || PyTuple_GET_SIZE(rest) != 2) {
            Py_DECREF(out);
            return rest;
        }
        Py_ssize_t at = PyList_GET_SIZE(out);
        int rc = PyList_SetSlice(out, at, at, PyTuple_GET_ITEM(rest, 0));
        PyObject *end = Py_NewRef(PyTuple_GET_ITEM(rest, 1));
        Py_DECREF(rest);
        if (rc < 0) {
            Py_DECREF(out);
            Py_DECREF(end);
            return NULL;
        }
        return Py_BuildValue("(NN)", out, end);
    }
    return Py_BuildValue("(NL)", out, pos);
}
