/* codec.decode_json_header's twin: a JSON remoting header as every client writes it, e.g.
 * {"code":310,"extFields":{"a":"PG","d":4,...},"flag":0,"language":"CPP","opaque":12,...}.
 *
 * Only the common shape is read here: one flat object of the known keys, each at most once,
 * code/opaque/flag/version JSON integers within int32, remark/language/serializeTypeCurrentRPC
 * strings or null, extFields null or an object whose values are strings, integers, booleans or
 * null (made Java strings as codec.ext_value makes them; null drops the key). Anything else (a
 * float, a nested value, an unknown or repeated top-level key, an escaped key, a lone
 * surrogate, invalid UTF-8, trailing bytes) is refused, and the caller hands the bytes to the
 * pure-Python decode_json_header, which accepts it or words the error. */
#include "speedups.h"

#define SERIALIZE_JSON 0
#define EXT_INT_DIGITS 18  /* any longer number goes to Python: no overflow to think about */

typedef const unsigned char *Pos;

static inline Pos
skip_ws(Pos p, Pos end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static inline int
hex4(Pos p, Pos end, unsigned *out)
{
    if (end - p < 4)
        return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

/* The UTF-8 of one code point (never a surrogate: those are refused before). */
static inline unsigned char *
put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = 0xC0 | cp >> 6; *o++ = 0x80 | (cp & 0x3F);
    } else if (cp < 0x10000) {
        *o++ = 0xE0 | cp >> 12; *o++ = 0x80 | (cp >> 6 & 0x3F); *o++ = 0x80 | (cp & 0x3F);
    } else {
        *o++ = 0xF0 | cp >> 18; *o++ = 0x80 | (cp >> 12 & 0x3F);
        *o++ = 0x80 | (cp >> 6 & 0x3F); *o++ = 0x80 | (cp & 0x3F);
    }
    return o;
}

/* The text of an escaped string from `s` (just past its opening quote) to its closing quote
 * at or after `p`; *pp past the quote. NULL without an exception: refused. */
static PyObject *
escaped_str(Pos s, Pos p, Pos end, Pos *pp)
{
    /* An escape never makes more UTF-8 than it takes bytes (\uXXXX: 6 for at most 3, a pair
     * 12 for 4), so the input's length bounds the output's. */
    Buf b;
    buf_init(&b);
    if (!buf_reserve(&b, end - s))
        return NULL;
    memcpy(b.p, s, p - s);
    unsigned char *o = b.p + (p - s);
    PyObject *out = NULL;
    while (p < end) {
        unsigned c = *p;
        if (c == '"') {
            out = PyUnicode_DecodeUTF8((const char *)b.p, o - b.p, "strict");
            if (out == NULL)
                PyErr_Clear();
            *pp = p + 1;
            break;
        }
        if (c < 0x20)
            break;
        if (c != '\\') {
            *o++ = (unsigned char)c;
            p++;
            continue;
        }
        if (end - p < 2)
            break;
        unsigned e = p[1], cp;
        p += 2;
        switch (e) {
        case '"': case '\\': case '/': *o++ = (unsigned char)e; continue;
        case 'b': *o++ = '\b'; continue;
        case 'f': *o++ = '\f'; continue;
        case 'n': *o++ = '\n'; continue;
        case 'r': *o++ = '\r'; continue;
        case 't': *o++ = '\t'; continue;
        case 'u': break;
        default: goto done;
        }
        if (!hex4(p, end, &cp))
            break;
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            unsigned lo;
            if (cp >= 0xDC00 || end - p < 6 || p[0] != '\\' || p[1] != 'u'
                || !hex4(p + 2, end, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                break;  /* a lone surrogate: Python words the refusal */
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        o = put_utf8(o, cp);
    }
done:
    buf_free(&b);
    return out;
}

/* Strings met again and again (extFields keys: "topic", "queueId"; one-letter ones are
 * Python's own singletons): the str made last time, its hash known, if its slot still holds
 * it. A str is immutable, so sharing one is invisible but for the allocation and hash saved. */
#define CACHE_SLOTS 256
#define CACHE_MAX_LEN 32
static PyObject *str_cache[CACHE_SLOTS];

static PyObject *
ascii_str(Pos s, Py_ssize_t n, int cache)
{
    if (n == 1)
        return PyUnicode_DecodeLatin1((const char *)s, 1, NULL);
    PyObject **slot = NULL;
    if (cache && n <= CACHE_MAX_LEN) {
        uint32_t h = 2166136261u;  /* FNV-1a */
        for (Py_ssize_t i = 0; i < n; i++)
            h = (h ^ s[i]) * 16777619u;
        slot = &str_cache[(h ^ h >> 16) % CACHE_SLOTS];
        PyObject *o = *slot;
        if (o != NULL && PyUnicode_GET_LENGTH(o) == n && memcmp(PyUnicode_1BYTE_DATA(o), s, n) == 0)
            return Py_NewRef(o);
    }
    PyObject *out = PyUnicode_New(n, 127);
    if (out == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(out), s, n);
    if (slot != NULL && PyObject_Hash(out) != -1)
        Py_XSETREF(*slot, Py_NewRef(out));
    return out;
}

/* A JSON string, `*pp` at its opening quote, as a new str; *pp past its closing quote. NULL
 * without an exception: refused (escapes and non-ASCII take the slower way). `cache`: a
 * string likely to come again (a key). */
static PyObject *
json_str(Pos *pp, Pos end, int cache)
{
    Pos s = *pp + 1, p = s;
    unsigned high = 0;
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20)
        high |= *p++;
    if (p == end || *p < 0x20)
        return NULL;
    if (*p == '\\')
        return escaped_str(s, p, end, pp);
    *pp = p + 1;
    if (high & 0x80) {
        PyObject *out = PyUnicode_DecodeUTF8((const char *)s, p - s, "strict");
        if (out == NULL)
            PyErr_Clear();
        return out;
    }
    return ascii_str(s, p - s, cache);
}

/* A JSON integer of at most `max_digits` digits at *pp: its value, the text Python's str()
 * of it gives (-0 is 0) in *text and *len. 0: not one (a float, a leading zero, too long). */
static int
json_int(Pos *pp, Pos end, int max_digits, long long *value, Pos *text, Py_ssize_t *len)
{
    Pos p = *pp, start = p;
    int neg = p < end && *p == '-';
    p += neg;
    Pos digits = p;
    unsigned long long v = 0;  /* at most 19 digits read: no overflow */
    while (p < end && *p >= '0' && *p <= '9' && p - digits <= max_digits)
        v = v * 10 + (unsigned)(*p++ - '0');
    Py_ssize_t n = p - digits;
    if (n == 0 || n > max_digits || (digits[0] == '0' && n > 1)
        || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
        return 0;
    *value = neg ? -(long long)v : (long long)v;
    *text = v == 0 ? digits : start;
    *len = v == 0 ? 1 : p - start;
    *pp = p;
    return 1;
}

static int
json_int32(Pos *pp, Pos end, long *out)
{
    long long v;
    Pos text;
    Py_ssize_t len;
    if (!json_int(pp, end, 10, &v, &text, &len) || v < -2147483648LL || v > 2147483647LL)
        return 0;
    *out = (long)v;
    return 1;
}

/* After an object's member: 1 at a ',' (*pp moved past it and the blanks after it), 0 at
 * the closing '}' (*pp on it), -1 at anything else. */
static inline int
next_member(Pos *pp, Pos end)
{
    Pos p = skip_ws(*pp, end);
    if (p < end && *p == ',') {
        *pp = skip_ws(p + 1, end);
        return 1;
    }
    *pp = p;
    return p < end && *p == '}' ? 0 : -1;
}

static inline int
word(Pos *pp, Pos end, const char *w, Py_ssize_t n)
{
    if (end - *pp < n || memcmp(*pp, w, n) != 0)
        return 0;
    *pp += n;
    return 1;
}

/* A string or null: a new reference (Py_None for null); NULL without an exception: refused. */
static PyObject *
str_or_null(Pos *pp, Pos end)
{
    if (*pp < end && **pp == '"')
        return json_str(pp, end, 1);
    return word(pp, end, "null", 4) ? Py_NewRef(Py_None) : NULL;
}

/* One extFields value as codec.ext_value makes it: a new str, or Py_None for null. */
static PyObject *
ext_item(Pos *pp, Pos end)
{
    if (*pp == end)
        return NULL;
    switch (**pp) {
    case '"':
        return json_str(pp, end, 0);
    case 't':
        return word(pp, end, "true", 4) ? ascii_str((Pos)"true", 4, 1) : NULL;
    case 'f':
        return word(pp, end, "false", 5) ? ascii_str((Pos)"false", 5, 1) : NULL;
    case 'n':
        return word(pp, end, "null", 4) ? Py_NewRef(Py_None) : NULL;
    }
    long long v;
    Pos text;
    Py_ssize_t len;
    if (!json_int(pp, end, EXT_INT_DIGITS, &v, &text, &len))
        return NULL;
    return ascii_str(text, len, 0);
}

/* The extFields object at *pp ('{'): a new dict in the order of first appearance, the last
 * value of a repeated key, keys whose value is null dropped (as _java_strings does it). */
static PyObject *
ext_object(Pos *pp, Pos end)
{
    Pos p = skip_ws(*pp + 1, end);
    PyObject *ext = PyDict_New();
    if (ext == NULL)
        return NULL;
    int nulls = 0;
    if (p < end && *p == '}') {
        *pp = p + 1;
        return ext;
    }
    for (;;) {
        if (p == end || *p != '"')
            goto refuse;
        PyObject *key = json_str(&p, end, 1);
        if (key == NULL)
            goto refuse;
        p = skip_ws(p, end);
        PyObject *value = NULL;
        if (p < end && *p == ':') {
            p = skip_ws(p + 1, end);
            value = ext_item(&p, end);
        }
        if (value == NULL) {
            Py_DECREF(key);
            goto refuse;
        }
        nulls += value == Py_None;
        int rc = PyDict_SetItem(ext, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto refuse;
        int more = next_member(&p, end);
        if (more < 0)
            goto refuse;
        if (!more)
            break;
    }
    *pp = p + 1;
    if (nulls) {  /* after the whole object: a repeated key keeps its first place */
        PyObject *k, *v, *drop = PyList_New(0);
        Py_ssize_t i = 0;
        while (drop != NULL && PyDict_Next(ext, &i, &k, &v))
            if (v == Py_None && PyList_Append(drop, k) < 0)
                Py_CLEAR(drop);
        for (i = 0; drop != NULL && i < PyList_GET_SIZE(drop); i++)
            if (PyDict_DelItem(ext, PyList_GET_ITEM(drop, i)) < 0)
                Py_CLEAR(drop);
        if (drop == NULL)
            goto refuse;
        Py_DECREF(drop);
    }
    return ext;
refuse:
    Py_DECREF(ext);
    return NULL;
}

enum { K_CODE, K_OPAQUE, K_FLAG, K_VERSION, K_REMARK, K_LANGUAGE, K_EXT, K_SERIALIZE, K_COUNT };

static const struct { const char *name; Py_ssize_t len; } keys[K_COUNT] = {
    {"code", 4}, {"opaque", 6}, {"flag", 4}, {"version", 7}, {"remark", 6}, {"language", 8},
    {"extFields", 9}, {"serializeTypeCurrentRPC", 23},
};

/* The known top-level key at *pp (its opening quote); -1 for any other or an escaped one. */
static int
header_key(Pos *pp, Pos end)
{
    Pos s = *pp + 1, p = s;
    while (p < end && *p != '"' && *p != '\\')
        p++;
    if (p == end || *p != '"')
        return -1;
    *pp = p + 1;
    for (int k = 0; k < K_COUNT; k++)
        if (keys[k].len == p - s && memcmp(keys[k].name, s, p - s) == 0)
            return k;
    return -1;
}

/* decode_json_header of a header in the common shape, `body` given: NULL with an exception
 * set is an error, NULL without one means "hand it to the pure-Python original". */
PyObject *
json_command(const unsigned char *d, Py_ssize_t n, PyObject *body)
{
    PyObject *cmd_type = bound[B_REMOTING_COMMAND], *codes = bound[B_LANGUAGE_CODES];
    if (cmd_type == NULL || codes == NULL || !PyDict_CheckExact(codes))
        return NULL;
    Pos p = skip_ws(d, d + n), end = d + n;
    long ints[4] = {0, 0, 0, 0};
    PyObject *strs[4] = {NULL, NULL, NULL, NULL};  /* remark, language, extFields, serialize */
    PyObject *result = NULL;
    unsigned seen = 0;
    if (p == end || *p != '{')
        return NULL;
    p = skip_ws(p + 1, end);
    for (;;) {
        int k = p < end && *p == '"' ? header_key(&p, end) : -1;
        if (k < 0 || seen & 1u << k)
            goto refuse;
        seen |= 1u << k;
        p = skip_ws(p, end);
        if (p == end || *p != ':')
            goto refuse;
        p = skip_ws(p + 1, end);
        if (k <= K_VERSION) {
            if (!json_int32(&p, end, &ints[k]))
                goto refuse;
        } else if (k == K_EXT && p < end && *p == '{') {
            if ((strs[k - K_REMARK] = ext_object(&p, end)) == NULL)
                goto refuse;
        } else if (k == K_EXT) {
            if (!word(&p, end, "null", 4))
                goto refuse;
            strs[k - K_REMARK] = Py_NewRef(Py_None);
        } else if ((strs[k - K_REMARK] = str_or_null(&p, end)) == NULL) {
            goto refuse;
        }
        int more = next_member(&p, end);
        if (more < 0)
            goto refuse;
        if (!more)
            break;
    }
    if (skip_ws(p + 1, end) != end || !(seen & 1u << K_CODE))
        goto refuse;
    int known = 0;  /* the language as the Python code maps it: "OTHER" if not in LANGUAGES */
    if (strs[1] != NULL && strs[1] != Py_None && (known = PyDict_Contains(codes, strs[1])) < 0)
        goto refuse;
    if (!known)
        Py_XSETREF(strs[1], Py_NewRef(s_OTHER));
    PyObject *items[9] = {
        PyLong_FromLong(ints[K_CODE]), PyLong_FromLong(ints[K_OPAQUE]),
        PyLong_FromLong(ints[K_FLAG]), strs[0] ? strs[0] : Py_None, strs[2] ? strs[2] : Py_None,
        body, strs[1], PyLong_FromLong(ints[K_VERSION]), PyLong_FromLong(SERIALIZE_JSON),
    };
    if (items[0] && items[1] && items[2] && items[7] && items[8])
        result = new_command(cmd_type, items);
    for (int i = 0; i < 9; i++)
        if (i < 3 || i > 6)
            Py_XDECREF(items[i]);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(strs[i]);
    return result;  /* or NULL with the constructor's error */
refuse:
    PyErr_Clear();
    for (int i = 0; i < 4; i++)
        Py_XDECREF(strs[i]);
    return NULL;
}

/* decode_json_header(data): the header as a RemotingCommand with an empty body. */
PyObject *
decode_json_header(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    if (nargs != 1 || PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return fallback(B_DECODE_JSON_HEADER, args, nargs, NULL);
    }
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    PyObject *cmd = empty ? json_command(view.buf, view.len, empty) : NULL;
    Py_XDECREF(empty);
    PyBuffer_Release(&view);
    if (cmd == NULL && !PyErr_Occurred())
        return fallback(B_DECODE_JSON_HEADER, args, nargs, NULL);
    return cmd;
}
