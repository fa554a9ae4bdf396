/*
 * The direct path of RowShaper.shape_page (framework/schema.py), compiled.
 *
 * A record whose keys and value types map to a planned direct layout becomes one staged
 * line: its canonical JSON (orjson, called with the options the Python path passes) without
 * the closing brace, the page's shared contract columns, the SHA-256 of the canonical JSON
 * as payload_hash, entity_key and _seq. This is byte for byte what the Python path builds
 * (tests/unit/test_native_shape.py compares both on every page variant). Any record this
 * loop is not sure of -- not a dict, a layout not planned as direct, a long out of range,
 * an encoding error, an entity key that is not plain text -- stops it: the Python path
 * shapes that record (and raises or rejects as it always has), then calls back here.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>
#include <string.h>

static const char HEX[] = "0123456789abcdef";
static const char KEY_SEP[] = "\",\"entity_key\":";
static const char SEQ_SEP[] = ",\"_seq\":";

/* Whether `a` has the same keys (in order) and value types as `b`. */
static int
same_signature(PyObject *a, PyObject *b)
{
    if (PyDict_GET_SIZE(a) != PyDict_GET_SIZE(b))
        return 0;
    Py_ssize_t pa = 0, pb = 0;
    PyObject *ka, *va, *kb, *vb;
    while (PyDict_Next(a, &pa, &ka, &va)) {
        if (!PyDict_Next(b, &pb, &kb, &vb))
            return 0;
        if (Py_TYPE(va) != Py_TYPE(vb))
            return 0;
        if (ka != kb) {
            if (!PyUnicode_CheckExact(ka) || !PyUnicode_CheckExact(kb))
                return 0;
            int eq = PyUnicode_Compare(ka, kb);
            if (eq != 0) {
                PyErr_Clear();
                return 0;
            }
        }
    }
    return 1;
}

/* The (keys, types) tuple the layouts are planned under, as shape_page builds it. */
static PyObject *
signature_of(PyObject *record)
{
    Py_ssize_t n = PyDict_GET_SIZE(record), pos = 0, i = 0;
    PyObject *keys = PyTuple_New(n), *types = PyTuple_New(n), *key, *value;
    if (keys == NULL || types == NULL) {
        Py_XDECREF(keys);
        Py_XDECREF(types);
        return NULL;
    }
    while (PyDict_Next(record, &pos, &key, &value)) {
        Py_INCREF(key);
        PyTuple_SET_ITEM(keys, i, key);
        Py_INCREF((PyObject *)Py_TYPE(value));
        PyTuple_SET_ITEM(types, i, (PyObject *)Py_TYPE(value));
        i++;
    }
    PyObject *sig = PyTuple_Pack(2, keys, types);
    Py_DECREF(keys);
    Py_DECREF(types);
    return sig;
}

/* The largest integer up to which a double holds every integer (schema.MAX_EXACT_INT). */
#define MAX_EXACT_INT 9007199254740991LL

/* 1 when `value` is an int within +-`bound` (a long's range when `bound` is 0). */
static int
int_within(PyObject *value, long long bound)
{
    if (!PyLong_Check(value))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow != 0 || PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return bound == 0 || (v <= bound && v >= -bound);
}

/* 1 when every value of `fields` in `record` is an int within +-`bound` (int_within): the
 * ints bound for long columns, and for double columns, which hold them exactly up to
 * MAX_EXACT_INT. */
static int
ints_within(PyObject *record, PyObject *fields, long long bound)
{
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(fields, i));
        if (v == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (!int_within(v, bound))
            return 0;
    }
    return 1;
}

/* 1 when every int value of `record` is within +-MAX_EXACT_INT, so within a long and held
 * exactly by a double column (the schema tracker's only per-row question about a row of a
 * signature it has seen). */
static int
ints_in_range(PyObject *record)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(record, &pos, &key, &value)) {
        if (PyLong_CheckExact(value) && !int_within(value, MAX_EXACT_INT))
            return 0;
    }
    return 1;
}

/* 1 when no value of `fields` in `record` is null or an empty string (RowShaper._missing). */
static int
all_present(PyObject *record, PyObject *fields)
{
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(fields, i));
        if (v == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (v == Py_None)
            return 0;
        if (PyUnicode_Check(v)) {
            if (!PyUnicode_CheckExact(v) || PyUnicode_GET_LENGTH(v) == 0)
                return 0;
        }
    }
    return 1;
}

/* entity_key of a record: its key values as text joined by "|" (schema._key_of). */
static PyObject *
entity_key_of(PyObject *record, PyObject *fields)
{
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n == 1) {
        PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(fields, 0));
        return v == NULL ? NULL : PyObject_Str(v);
    }
    PyObject *parts = PyList_New(n);
    if (parts == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(fields, i));
        PyObject *text = v == NULL ? NULL : PyObject_Str(v);
        if (text == NULL) {
            Py_DECREF(parts);
            return NULL;
        }
        PyList_SET_ITEM(parts, i, text);
    }
    PyObject *sep = PyUnicode_FromString("|");
    PyObject *joined = sep == NULL ? NULL : PyUnicode_Join(sep, parts);
    Py_XDECREF(sep);
    Py_DECREF(parts);
    return joined;
}

/* 1, with `data` and `size` set to its characters, when `text` is ASCII that orjson writes
 * between quotes unescaped; 0 (no error set) when the string needs the encoder. */
static int
plain_ascii(PyObject *text, const char **data, Py_ssize_t *size)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
        return 0;
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            return 0;
    }
    *data = s;
    *size = n;
    return 1;
}

/*
 * shape_direct(records, start, fast, shared, seq, lines, observed, hashes, dumps, kwnames,
 *              kwvalues) -> (stop, seq, keys_exact)
 *
 * records: list of parsed records; start: index of the first to shape.
 * fast: {(keys, types): (layout, key_fields or None, long_fields, keys_exact, needed,
 *       double_fields)} for the planned direct layouts (needed: the fields that must be
 *       neither null nor an empty string; long_fields / double_fields: the int fields bound
 *       for long / double columns).
 * shared: the page's contract columns as staged JSON, up to the opening quote of
 *         payload_hash.
 * lines: the page's staged lines to append to; hashes: its key-hash list or None.
 * observed: the page's (row, signature) list for the schema tracker: of a run of records of
 *           one layout whose ints are all within +-MAX_EXACT_INT only the first is appended
 *           (the others would tell the tracker nothing new); a record with a larger int
 *           always is.
 * dumps, kwnames, kwvalues: orjson.dumps and the keywords the canonical JSON is made with.
 * Returns the index of the first record not shaped here (len(records) when all were), the
 * last sequence number used, and False when a record's keys were not staged exactly (the
 * page's key hashes are then void).
 */
static PyObject *
shape_direct(PyObject *self, PyObject *args)
{
    PyObject *records, *fast, *shared, *lines, *observed, *hashes, *dumps, *kwnames, *kwvalues;
    Py_ssize_t start;
    long long seq;
    if (!PyArg_ParseTuple(args, "O!nO!O!LO!O!OOO!O!", &PyList_Type, &records, &start,
                          &PyDict_Type, &fast, &PyBytes_Type, &shared, &seq, &PyList_Type,
                          &lines, &PyList_Type, &observed, &hashes, &dumps, &PyTuple_Type,
                          &kwnames, &PyTuple_Type, &kwvalues))
        return NULL;
    if (hashes != Py_None && !PyList_Check(hashes)) {
        PyErr_SetString(PyExc_TypeError, "hashes must be a list or None");
        return NULL;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    if (PyTuple_GET_SIZE(kwvalues) != nkw || nkw > 4) {
        PyErr_SetString(PyExc_ValueError, "kwnames and kwvalues differ");
        return NULL;
    }
    int keys_exact = 1;
    Py_ssize_t n = PyList_GET_SIZE(records), i = start;
    const char *shared_data = PyBytes_AS_STRING(shared);
    Py_ssize_t shared_size = PyBytes_GET_SIZE(shared);
    PyObject *prev = NULL, *entry = NULL; /* borrowed: the last record shaped and its entry */
    PyObject *told = NULL; /* borrowed: the layout whose run the tracker was last given */
    PyObject *callargs[5];

    for (; i < n; i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        if (!PyDict_CheckExact(record) || PyDict_GET_SIZE(record) == 0)
            break;
        if (prev == NULL || !same_signature(record, prev)) {
            PyObject *sig = signature_of(record);
            if (sig == NULL)
                return NULL;
            entry = PyDict_GetItemWithError(fast, sig);
            Py_DECREF(sig);
            if (entry == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                break;
            }
            if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 6) {
                PyErr_SetString(PyExc_TypeError, "a fast layout entry is not a 6-tuple");
                return NULL;
            }
        }
        PyObject *layout = PyTuple_GET_ITEM(entry, 0);
        PyObject *key_fields = PyTuple_GET_ITEM(entry, 1);
        PyObject *long_fields = PyTuple_GET_ITEM(entry, 2);
        int exact = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 3));
        PyObject *needed = PyTuple_GET_ITEM(entry, 4);
        if (PyTuple_GET_SIZE(needed) > 0 && !all_present(record, needed))
            break;
        if (PyTuple_GET_SIZE(long_fields) > 0 && !ints_within(record, long_fields, 0))
            break;
        PyObject *double_fields = PyTuple_GET_ITEM(entry, 5);
        if (PyTuple_GET_SIZE(double_fields) > 0
                && !ints_within(record, double_fields, MAX_EXACT_INT))
            break;

        callargs[0] = NULL;
        callargs[1] = record;
        for (Py_ssize_t k = 0; k < nkw; k++)
            callargs[2 + k] = PyTuple_GET_ITEM(kwvalues, k);
        PyObject *canonical = PyObject_Vectorcall(dumps, callargs + 1,
                                                  1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
        if (canonical == NULL) {
            PyErr_Clear(); /* the Python path encodes it (its fallback, or its error) */
            break;
        }
        if (!PyBytes_CheckExact(canonical) || PyBytes_GET_SIZE(canonical) < 2) {
            Py_DECREF(canonical);
            break;
        }
        const char *cdata = PyBytes_AS_STRING(canonical);
        Py_ssize_t csize = PyBytes_GET_SIZE(canonical);
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, cdata, (size_t)csize);
        SHA256_Final(md, &ctx);
        char digest[2 * SHA256_DIGEST_LENGTH];
        for (int b = 0; b < SHA256_DIGEST_LENGTH; b++) {
            digest[2 * b] = HEX[md[b] >> 4];
            digest[2 * b + 1] = HEX[md[b] & 15];
        }

        PyObject *key = NULL, *key_json = NULL;
        if (key_fields == Py_None)
            key = PyUnicode_FromStringAndSize(digest, sizeof digest);
        else
            key = entity_key_of(record, key_fields);
        if (key == NULL) {
            Py_DECREF(canonical);
            PyErr_Clear();
            break;
        }
        const char *kdata;
        Py_ssize_t ksize;
        if (!plain_ascii(key, &kdata, &ksize)) {
            key_json = PyObject_CallOneArg(dumps, key);
            if (key_json == NULL || !PyBytes_CheckExact(key_json)) {
                Py_XDECREF(key_json);
                Py_DECREF(key);
                Py_DECREF(canonical);
                PyErr_Clear();
                break;
            }
            kdata = PyBytes_AS_STRING(key_json);
            ksize = PyBytes_GET_SIZE(key_json);
        }
        seq += 1;
        char seqtext[24];
        int seqsize = snprintf(seqtext, sizeof seqtext, "%lld", seq);

        Py_ssize_t size = (csize - 1) + shared_size + (Py_ssize_t)sizeof digest
                          + (Py_ssize_t)(sizeof KEY_SEP - 1) + ksize + (key_json ? 0 : 2)
                          + (Py_ssize_t)(sizeof SEQ_SEP - 1) + seqsize + 2;
        PyObject *line = PyBytes_FromStringAndSize(NULL, size);
        if (line == NULL) {
            Py_XDECREF(key_json);
            Py_DECREF(key);
            Py_DECREF(canonical);
            return NULL;
        }
        char *out = PyBytes_AS_STRING(line);
        memcpy(out, cdata, (size_t)(csize - 1));
        out += csize - 1;
        memcpy(out, shared_data, (size_t)shared_size);
        out += shared_size;
        memcpy(out, digest, sizeof digest);
        out += sizeof digest;
        memcpy(out, KEY_SEP, sizeof KEY_SEP - 1);
        out += sizeof KEY_SEP - 1;
        if (key_json == NULL)
            *out++ = '"';
        memcpy(out, kdata, (size_t)ksize);
        out += ksize;
        if (key_json == NULL)
            *out++ = '"';
        memcpy(out, SEQ_SEP, sizeof SEQ_SEP - 1);
        out += sizeof SEQ_SEP - 1;
        memcpy(out, seqtext, (size_t)seqsize);
        out += seqsize;
        *out++ = '}';
        *out++ = '\n';
        Py_XDECREF(key_json);
        Py_DECREF(canonical);

        int failed = PyList_Append(lines, line);
        Py_DECREF(line);
        if (failed) {
            Py_DECREF(key);
            return NULL;
        }
        int in_range = ints_in_range(record);
        if (layout != told || !in_range) {
            PyObject *pair = PyTuple_Pack(2, record, layout);
            if (pair == NULL || PyList_Append(observed, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(key);
                return NULL;
            }
            Py_DECREF(pair);
            told = in_range ? layout : NULL;
        }
        if (hashes != Py_None && keys_exact) {
            if (exact) {
                Py_hash_t h = PyObject_Hash(key);
                PyObject *hv = h == -1 ? NULL : PyLong_FromSsize_t(h);
                if (hv == NULL || PyList_Append(hashes, hv) < 0) {
                    Py_XDECREF(hv);
                    Py_DECREF(key);
                    return NULL;
                }
                Py_DECREF(hv);
            } else {
                keys_exact = 0;
            }
        }
        Py_DECREF(key);
        prev = record;
    }
    return Py_BuildValue("nLO", i, seq, keys_exact ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"shape_direct", shape_direct, METH_VARARGS,
     "Shape the records of a page that take a planned direct layout (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "framework.native._shape",
    "The compiled direct path of RowShaper.shape_page.", -1, methods,
};

PyMODINIT_FUNC
PyInit__shape(void)
{
    return PyModule_Create(&module);
}
