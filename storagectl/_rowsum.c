/* storagectl._rowsum: the row count and crc32 sum of a block of text COPY rows in one C pass.
 *
 * line_crc32_sum(buffer) -> (lines, sum): every line ending with '\n' (newline included) and a last
 * one without it, as storagectl.rowsum.line_crc32_sum computes them in Python; sum is exact (not
 * reduced mod 2**64). No Python object per line, and the GIL is released while a large buffer is
 * read, so compression threads run meanwhile.
 *
 * line_crc32_sum_doubles(buffer, columns) -> (lines, sum): the same, with each field of a column marked
 * in ``columns`` (a bytes object, one byte per tab-separated field, non-zero: a float8 column)
 * summed as the 8 big-endian bytes of the double it spells, not as its text: SQLite writes a REAL
 * with 17 digits, PostgreSQL the shortest text that reads back as the same double, so the line a
 * SQLite -> PostgreSQL copy sent and the line PostgreSQL prints for the row it stored sum alike
 * exactly when each such field holds the same double (strtod: correctly rounded, as the server's).
 *
 * The CRC is the zlib/PNG one (reflected polynomial 0xEDB88320), computed slice-by-8 with tables of
 * our own instead of linking zlib: the build needs Python's headers and a compiler, not zlib's
 * headers too (a missing zlib1g-dev would silently leave the slow path), and a 12-byte row costs no
 * library call.
 *
 * key_digest(records, offset, horizon) and dumped_digest(keys, reply, horizon): the digest of Redis
 * keys a data migration keeps (storagectl.datamove.redis_digest, where the same is written in
 * Python), a key at a time at ~0.1 us instead of ~1 us in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <math.h>

#ifndef ROWSUM_SOURCE_CRC32
#define ROWSUM_SOURCE_CRC32 0 /* set by setup.py: the crc32 of this file, to detect a stale build */
#endif

#define RELEASE_GIL_FROM 16384 /* bytes: below this, releasing and taking back the GIL costs more */

static uint32_t crc_tables[8][256];

static void build_crc_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int bit = 0; bit < 8; bit++)
            crc = crc & 1 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
        crc_tables[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = crc_tables[0][n];
        for (int k = 1; k < 8; k++) {
            crc = crc_tables[0][crc & 0xff] ^ (crc >> 8);
            crc_tables[k][n] = crc;
        }
    }
}

/* ``crc``: the state before (0xFFFFFFFF to start); the crc32 is the last state ^ 0xFFFFFFFF */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = crc_tables[7][word & 0xff] ^ crc_tables[6][(word >> 8) & 0xff] ^
              crc_tables[5][(word >> 16) & 0xff] ^ crc_tables[4][(word >> 24) & 0xff] ^
              crc_tables[3][(word >> 32) & 0xff] ^ crc_tables[2][(word >> 40) & 0xff] ^
              crc_tables[1][(word >> 48) & 0xff] ^ crc_tables[0][word >> 56];
    }
#endif
    for (; n; p++, n--)
        crc = crc_tables[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
    return crc;
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    return crc32_update(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

typedef struct {
    uint64_t lines, sum_low, sum_high; /* the sum is sum_high * 2**64 + sum_low */
} LineSums;

static void sum_lines(const unsigned char *p, size_t size, LineSums *out)
{
    const unsigned char *end = p + size;
    while (p < end) {
        const unsigned char *newline = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *next = newline ? newline + 1 : end;
        uint32_t crc = crc32_of(p, (size_t)(next - p));
        out->sum_low += crc;
        out->sum_high += out->sum_low < crc;
        out->lines++;
        p = next;
    }
}

#define FIELD_MAX 63 /* a float8's text is at most 24 bytes: a longer field is summed as it is */

/* The double that the field ``p[0:n]`` spells in decimal, as 8 big-endian bytes into ``out``;
 * returns 0 (the field is then summed as it is) for anything but a plain finite decimal number:
 * what starts with a sign, a digit or a point and ends with a digit or a point. */
static int double_bytes(const unsigned char *p, size_t n, unsigned char *out)
{
    char field[FIELD_MAX + 1];
    if (n == 0 || n > FIELD_MAX)
        return 0;
    unsigned char first = p[0], last = p[n - 1];
    if (!(first == '-' || first == '+' || first == '.' || (first >= '0' && first <= '9')) ||
        !(last == '.' || (last >= '0' && last <= '9')) || memchr(p, 'x', n) || memchr(p, 'X', n))
        return 0;
    memcpy(field, p, n);
    field[n] = '\0';
    char *end;
    double value = strtod(field, &end);
    if (end != field + n || !isfinite(value))
        return 0;
    uint64_t bits;
    memcpy(&bits, &value, 8);
    for (int i = 7; i >= 0; i--, bits >>= 8)
        out[i] = (unsigned char)(bits & 0xff);
    return 1;
}

static uint32_t crc32_of_line_doubles(const unsigned char *p, size_t n, const unsigned char *columns,
                                      size_t ncolumns)
{
    uint32_t crc = 0xFFFFFFFFu;
    const unsigned char *end = p + n, *field = p;
    size_t column = 0;
    unsigned char bytes[8];
    while (field < end) {
        const unsigned char *tab = memchr(field, '\t', (size_t)(end - field));
        const unsigned char *stop = tab ? tab : end;
        size_t length = (size_t)(stop - field);
        int newline = !tab && length && stop[-1] == '\n'; /* the line's last field holds its newline */
        if (column < ncolumns && columns[column] && double_bytes(field, length - (size_t)newline, bytes)) {
            crc = crc32_update(crc, bytes, 8);
            crc = crc32_update(crc, stop - newline, (size_t)newline + (tab != NULL));
        } else {
            crc = crc32_update(crc, field, length + (tab != NULL));
        }
        field = tab ? tab + 1 : end;
        column++;
    }
    return crc ^ 0xFFFFFFFFu;
}

static void sum_lines_doubles(const unsigned char *p, size_t size, const unsigned char *columns, size_t ncolumns,
                              LineSums *out)
{
    const unsigned char *end = p + size;
    while (p < end) {
        const unsigned char *newline = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *next = newline ? newline + 1 : end;
        uint32_t crc = crc32_of_line_doubles(p, (size_t)(next - p), columns, ncolumns);
        out->sum_low += crc;
        out->sum_high += out->sum_low < crc;
        out->lines++;
        p = next;
    }
}

static PyObject *exact_sum(const LineSums *sums)
{
    PyObject *low = PyLong_FromUnsignedLongLong(sums->sum_low);
    if (sums->sum_high == 0 || low == NULL)
        return low;
    PyObject *high = PyLong_FromUnsignedLongLong(sums->sum_high);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *shifted = high && shift ? PyNumber_Lshift(high, shift) : NULL;
    PyObject *total = shifted ? PyNumber_Or(shifted, low) : NULL;
    Py_XDECREF(high);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    Py_DECREF(low);
    return total;
}

static PyObject *line_crc32_sum(PyObject *Py_UNUSED(module), PyObject *data)
{
    Py_buffer view;
    LineSums sums = {0, 0, 0};
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len >= RELEASE_GIL_FROM) {
        Py_BEGIN_ALLOW_THREADS
        sum_lines(view.buf, (size_t)view.len, &sums);
        Py_END_ALLOW_THREADS
    } else {
        sum_lines(view.buf, (size_t)view.len, &sums);
    }
    PyBuffer_Release(&view);
    PyObject *total = exact_sum(&sums);
    if (total == NULL)
        return NULL;
    return Py_BuildValue("(KN)", (unsigned long long)sums.lines, total);
}

static PyObject *line_crc32_sum_doubles(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view, columns;
    LineSums sums = {0, 0, 0};
    if (!PyArg_ParseTuple(args, "y*y*", &view, &columns))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    sum_lines_doubles(view.buf, (size_t)view.len, columns.buf, (size_t)columns.len, &sums);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyBuffer_Release(&columns);
    PyObject *total = exact_sum(&sums);
    if (total == NULL)
        return NULL;
    return Py_BuildValue("(KN)", (unsigned long long)sums.lines, total);
}

/* -- the digest of Redis keys ---------------------------------------------------------------
 * hash64(data): h = len * GOLDEN; per 8-byte little-endian word w (the last one zero-padded)
 * h = fmix64(h ^ w); then fmix64(h ^ len). A key's hash is hash64(token + expiry (8 bytes LE) + key),
 * its token the DUMP payload's CRC-64 (last 8 bytes), or for a hash-table set (RDB type 2) or hash
 * (4) -- whose payload lists elements in table order -- hash64(type + RDB version + sum of hash64
 * of each member, or of each field and value together) as 8 bytes LE. */
#define GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t word_at(const unsigned char *p, size_t n)
{
    uint64_t word = 0;
    for (size_t i = 0; i < n && i < 8; i++)
        word |= (uint64_t)p[i] << (8 * i);
    return word;
}

static uint64_t hash_words(uint64_t h, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8)
        h = fmix64(h ^ word_at(p, 8));
    if (n)
        h = fmix64(h ^ word_at(p, n));
    return h;
}

static uint64_t hash64(const unsigned char *p, size_t n)
{
    return fmix64(hash_words(n * GOLDEN, p, n) ^ n);
}

/* An RDB length at *pos (advanced past it); -1: not a length, or past end. */
static int64_t rdb_length(const unsigned char *p, size_t end, size_t *pos)
{
    if (*pos >= end)
        return -1;
    unsigned char first = p[*pos];
    size_t at = *pos;
    switch (first >> 6) {
    case 0:
        *pos = at + 1;
        return first & 0x3f;
    case 1:
        if (at + 2 > end)
            return -1;
        *pos = at + 2;
        return ((int64_t)(first & 0x3f) << 8) | p[at + 1];
    }
    size_t width = first == 0x80 ? 4 : first == 0x81 ? 8 : 0;
    if (!width || at + 1 + width > end)
        return -1;
    uint64_t value = 0;
    for (size_t i = 0; i < width; i++)
        value = value << 8 | p[at + 1 + i];
    *pos = at + 1 + width;
    return value > (uint64_t)INT64_MAX / 2 ? -1 : (int64_t)value;
}

/* Where the RDB string at pos ends (raw, an integer, or LZF); 0: malformed. */
static size_t rdb_string_end(const unsigned char *p, size_t end, size_t pos)
{
    if (pos >= end)
        return 0;
    unsigned char first = p[pos];
    if (first >> 6 != 3) {
        int64_t length = rdb_length(p, end, &pos);
        return length < 0 || (uint64_t)length > end - pos ? 0 : pos + (size_t)length;
    }
    unsigned char special = first & 0x3f;
    if (special <= 2) {
        size_t stop = pos + 1 + (special == 0 ? 1 : special == 1 ? 2 : 4);
        return stop > end ? 0 : stop;
    }
    if (special != 3)
        return 0;
    pos++;
    int64_t compressed = rdb_length(p, end, &pos);
    if (compressed < 0 || rdb_length(p, end, &pos) < 0 || (uint64_t)compressed > end - pos)
        return 0;
    return pos + (size_t)compressed;
}

/* The token of a payload: 1 and *token set, 0 when it is the CRC (not a hash table, or malformed). */
static int hashtable_token(const unsigned char *p, size_t n, uint64_t *token)
{
    if (n < 11 || (p[0] != 2 && p[0] != 4))
        return 0;
    size_t end = n - 10, pos = 1;
    int64_t count = rdb_length(p, end, &pos);
    if (count < 0)
        return 0;
    int spans = p[0] == 4 ? 2 : 1;
    uint64_t sum = 0;
    for (int64_t i = 0; i < count; i++) {
        size_t start = pos;
        for (int k = 0; k < spans; k++)
            if (!(pos = rdb_string_end(p, end, pos)))
                return 0;
        sum += hash64(p + start, pos - start);
    }
    if (pos != end)
        return 0;
    unsigned char head[11];
    head[0] = p[0];
    head[1] = p[n - 10];
    head[2] = p[n - 9];
    for (int i = 0; i < 8; i++)
        head[3 + i] = (unsigned char)(sum >> (8 * i));
    *token = hash64(head, sizeof head);
    return 1;
}

static uint64_t key_hash(const unsigned char *payload, size_t payload_len, uint64_t expire_at,
                         const unsigned char *key, size_t key_len)
{
    uint64_t token;
    if (!hashtable_token(payload, payload_len, &token))
        token = word_at(payload + payload_len - 8, 8);
    size_t n = 16 + key_len;
    uint64_t h = n * GOLDEN;
    h = fmix64(h ^ token);
    h = fmix64(h ^ expire_at);
    return fmix64(hash_words(h, key, key_len) ^ n);
}

typedef struct {
    uint64_t count, total, horizon;
    PyObject *soon; /* list of (second, hash) */
} Digest;

/* Add one key; -1 with an exception set on a bad record. */
static int digest_add(Digest *digest, PyObject *key, long long expire_at, PyObject *payload)
{
    if (!PyBytes_Check(key) || !PyBytes_Check(payload) || PyBytes_GET_SIZE(payload) < 10 || expire_at < 0) {
        PyErr_SetString(PyExc_ValueError, "a record is (key bytes, expiry >= 0, DUMP payload bytes)");
        return -1;
    }
    uint64_t value = key_hash((const unsigned char *)PyBytes_AS_STRING(payload), (size_t)PyBytes_GET_SIZE(payload),
                              (uint64_t)expire_at, (const unsigned char *)PyBytes_AS_STRING(key),
                              (size_t)PyBytes_GET_SIZE(key));
    if (expire_at > 0 && (uint64_t)expire_at < digest->horizon) {
        PyObject *entry = Py_BuildValue("(LK)", expire_at / 1000, (unsigned long long)value);
        int status = entry ? PyList_Append(digest->soon, entry) : -1;
        Py_XDECREF(entry);
        return status;
    }
    digest->count++;
    digest->total += value;
    return 0;
}

static PyObject *digest_result(Digest *digest)
{
    return Py_BuildValue("(KKN)", (unsigned long long)digest->count, (unsigned long long)digest->total, digest->soon);
}

static PyObject *key_digest(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *records;
    long long offset;
    unsigned long long horizon;
    if (!PyArg_ParseTuple(args, "OLK", &records, &offset, &horizon))
        return NULL;
    PyObject *items = PySequence_Fast(records, "records must be a sequence");
    if (items == NULL)
        return NULL;
    Digest digest = {0, 0, horizon, PyList_New(0)};
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t i = 0; digest.soon && i < n; i++) {
        PyObject *record = PySequence_Fast_GET_ITEM(items, i);
        if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != 3) {
            PyErr_SetString(PyExc_ValueError, "a record is a tuple (key, expiry, payload)");
            break;
        }
        long long expire_at = PyLong_AsLongLong(PyTuple_GET_ITEM(record, 1));
        if (expire_at == -1 && PyErr_Occurred())
            break;
        if (expire_at)
            expire_at += offset;
        if (digest_add(&digest, PyTuple_GET_ITEM(record, 0), expire_at, PyTuple_GET_ITEM(record, 2)) < 0)
            break;
    }
    Py_DECREF(items);
    if (PyErr_Occurred()) {
        Py_XDECREF(digest.soon);
        return NULL;
    }
    return digest_result(&digest);
}

static PyObject *dumped_digest(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *keys, *reply;
    unsigned long long horizon;
    if (!PyArg_ParseTuple(args, "O!O!K", &PyList_Type, &keys, &PyList_Type, &reply, &horizon))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(reply) != 1 + 2 * n) {
        PyErr_SetString(PyExc_ValueError, "a reply is [TIME, payload, expiry, ...] for the keys");
        return NULL;
    }
    Digest digest = {0, 0, horizon, PyList_New(0)};
    for (Py_ssize_t i = 0; digest.soon && i < n; i++) {
        PyObject *payload = PyList_GET_ITEM(reply, 1 + 2 * i);
        long long expire_at = PyLong_AsLongLong(PyList_GET_ITEM(reply, 2 + 2 * i));
        if (expire_at == -1 && PyErr_Occurred())
            break;
        if (payload == Py_None || expire_at == -2) /* gone since the SCAN */
            continue;
        if (digest_add(&digest, PyList_GET_ITEM(keys, i), expire_at == -1 ? 0 : expire_at, payload) < 0)
            break;
    }
    if (PyErr_Occurred()) {
        Py_XDECREF(digest.soon);
        return NULL;
    }
    return digest_result(&digest);
}

/* -- the digest of keys in an RDB snapshot ------------------------------------------------------
 * rdb_digest(buffer, pos, selected, version, horizon): the keys of the records complete in buffer
 * from pos, as dumped_digest would see them (DUMP payload = type + value + 2-byte version + CRC-64,
 * recomputed here), summed when selected (the db being read) and skipped otherwise. Stops before a
 * record that is incomplete (1) or that the Python parser must read: an opcode other than an
 * expiry or LRU/LFU hint, a stream, a module type (2). Returns (pos, count, sum, soon, why). */
static uint64_t crc64_table[256];

static void build_crc64_table(void)
{
    for (uint64_t n = 0; n < 256; n++) {
        uint64_t crc = n;
        for (int bit = 0; bit < 8; bit++)
            crc = crc & 1 ? 0x95AC9329AC4BC9B5ULL ^ (crc >> 1) : crc >> 1;
        crc64_table[n] = crc;
    }
}

static uint64_t crc64_update(uint64_t crc, const unsigned char *p, size_t n)
{
    for (; n; p++, n--)
        crc = crc64_table[(crc ^ *p) & 0xff] ^ (crc >> 8);
    return crc;
}

/* The end of the value of RDB type kind at pos (0: malformed or incomplete, -1 as size_t: a type
 * left to Python). */
#define LEFT_TO_PYTHON ((size_t)-1)

static size_t rdb_value_end(const unsigned char *p, size_t end, size_t pos, int kind)
{
    int64_t count;
    switch (kind) {
    case 0: case 9: case 10: case 11: case 12: case 13: case 16: case 17: case 20:
        return rdb_string_end(p, end, pos);
    case 1: case 2: case 14: case 4:
        if ((count = rdb_length(p, end, &pos)) < 0)
            return 0;
        for (int64_t i = 0; i < (kind == 4 ? 2 * count : count); i++)
            if (!(pos = rdb_string_end(p, end, pos)))
                return 0;
        return pos;
    case 3: case 5: case 18:
        if ((count = rdb_length(p, end, &pos)) < 0)
            return 0;
        for (int64_t i = 0; i < count; i++) {
            if (kind == 18 && rdb_length(p, end, &pos) < 0)
                return 0;
            if (!(pos = rdb_string_end(p, end, pos)))
                return 0;
            if (kind == 5)
                pos += 8;
            else if (kind == 3) {
                if (pos >= end)
                    return 0;
                unsigned char size = p[pos++];
                pos += size < 253 ? size : 0;
            }
            if (pos > end)
                return 0;
        }
        return pos;
    }
    return LEFT_TO_PYTHON;
}

static uint64_t body_token(int kind, const unsigned char *body, size_t n, const unsigned char *version)
{
    if (kind == 2 || kind == 4) {
        /* the hash-table token needs the payload laid out: type + body + version + 8 bytes */
        unsigned char *payload = PyMem_Malloc(n + 11);
        uint64_t token;
        if (payload != NULL) {
            payload[0] = (unsigned char)kind;
            memcpy(payload + 1, body, n);
            memcpy(payload + 1 + n, version, 2);
            memset(payload + 3 + n, 0, 8);
            int found = hashtable_token(payload, n + 11, &token);
            PyMem_Free(payload);
            if (found)
                return token;
        }
    }
    unsigned char type = (unsigned char)kind;
    uint64_t crc = crc64_update(0, &type, 1);
    crc = crc64_update(crc, body, n);
    return crc64_update(crc, version, 2);
}

static PyObject *rdb_digest(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view, version_view;
    Py_ssize_t start;
    int selected;
    unsigned long long horizon;
    if (!PyArg_ParseTuple(args, "y*npy*K", &view, &start, &selected, &version_view, &horizon))
        return NULL;
    const unsigned char *p = view.buf, *version = version_view.buf;
    size_t end = (size_t)view.len, pos = (size_t)start;
    Digest digest = {0, 0, horizon, PyList_New(0)};
    int why = 1;
    while (digest.soon && version_view.len == 2 && pos < end) {
        size_t at = pos;
        uint64_t expire_at = 0;
        if (p[at] == 0xFC) {
            if (at + 9 > end)
                break;
            expire_at = word_at(p + at + 1, 8);
            expire_at = expire_at ? expire_at : 1;
            at += 9;
        }
        if (at < end && (p[at] == 0xF8 || p[at] == 0xF9)) { /* LRU idle (a length) or LFU counter (a byte) */
            size_t after = at + 1;
            if (p[at] == 0xF8 ? rdb_length(p, end, &after) < 0 : after + 1 > end)
                break;
            at = p[at] == 0xF8 ? after : after + 1;
        }
        if (at >= end)
            break;
        int kind = p[at];
        if (kind >= 0xF4) {
            why = 2;
            break;
        }
        size_t key_start = at + 1, key_end = rdb_string_end(p, end, key_start);
        if (!key_end)
            break;
        size_t value_end = rdb_value_end(p, end, key_end, kind);
        if (value_end == LEFT_TO_PYTHON) {
            why = 2;
            break;
        }
        if (!value_end)
            break;
        if (selected) {
            if (p[key_start] >> 6 != 0 || key_start + 1 + (p[key_start] & 0x3f) != key_end) {
                why = 2; /* a key not stored as a plain short string: left to Python */
                break;
            }
            uint64_t token = body_token(kind, p + key_end, value_end - key_end, version);
            size_t key_len = key_end - key_start - 1, n = 16 + key_len;
            uint64_t h = fmix64(fmix64(n * GOLDEN ^ token) ^ expire_at);
            uint64_t value = fmix64(hash_words(h, p + key_start + 1, key_len) ^ n);
            if (expire_at > 0 && expire_at < digest.horizon) {
                PyObject *entry = Py_BuildValue("(KK)", (unsigned long long)(expire_at / 1000), (unsigned long long)value);
                if (!entry || PyList_Append(digest.soon, entry) < 0) {
                    Py_XDECREF(entry);
                    break;
                }
                Py_DECREF(entry);
            } else {
                digest.count++;
                digest.total += value;
            }
        }
        pos = value_end;
    }
    PyBuffer_Release(&view);
    PyBuffer_Release(&version_view);
    if (digest.soon == NULL || PyErr_Occurred()) {
        Py_XDECREF(digest.soon);
        return NULL;
    }
    return Py_BuildValue("(nKKNi)", (Py_ssize_t)pos, (unsigned long long)digest.count,
                         (unsigned long long)digest.total, digest.soon, pos < end ? why : 1);
}

static PyMethodDef rowsum_methods[] = {
    {"line_crc32_sum_doubles", line_crc32_sum_doubles, METH_VARARGS,
     "line_crc32_sum_doubles(buffer, columns) -> line_crc32_sum's (lines, sum), the fields of the float8 "
     "columns marked in columns summed as SQLite's printf('%!.17g') writes them"},
    {"line_crc32_sum", line_crc32_sum, METH_O,
     "line_crc32_sum(buffer) -> (lines, sum of the crc32 of every line, its newline included)"},
    {"key_digest", key_digest, METH_VARARGS,
     "key_digest(records, offset, horizon) -> (count, sum mod 2**64, [(second, hash), ...]) of (key, expiry, "
     "payload) records, offset added to each expiry; keys expiring before horizon listed, not summed"},
    {"dumped_digest", dumped_digest, METH_VARARGS,
     "dumped_digest(keys, reply, horizon) -> as key_digest, of a DUMP + PEXPIRETIME batch's reply"},
    {"rdb_digest", rdb_digest, METH_VARARGS,
     "rdb_digest(buffer, pos, selected, version, horizon) -> (pos, count, sum, soon, why) of the complete "
     "records of an RDB snapshot from pos (why: 1 more bytes needed, 2 a record or opcode left to Python)"},
    {NULL, NULL, 0, NULL},
};

static int rowsum_exec(PyObject *module)
{
    build_crc_tables();
    build_crc64_table();
    PyObject *source_crc32 = PyLong_FromUnsignedLong(ROWSUM_SOURCE_CRC32);
    int status = PyModule_AddObjectRef(module, "SOURCE_CRC32", source_crc32);
    Py_XDECREF(source_crc32);
    return status;
}

static PyModuleDef_Slot rowsum_slots[] = {
    {Py_mod_exec, rowsum_exec},
    {0, NULL},
};

static struct PyModuleDef rowsum_module = {
    PyModuleDef_HEAD_INIT, "storagectl._rowsum",
    "The row count and crc32 sum of text COPY rows in C (see storagectl.rowsum).",
    0, rowsum_methods, rowsum_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowsum(void)
{
    return PyModuleDef_Init(&rowsum_module);
}
