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

static PyMethodDef rowsum_methods[] = {
    {"line_crc32_sum_doubles", line_crc32_sum_doubles, METH_VARARGS,
     "line_crc32_sum_doubles(buffer, columns) -> line_crc32_sum's (lines, sum), the fields of the float8 "
     "columns marked in columns summed as SQLite's printf('%!.17g') writes them"},
    {"line_crc32_sum", line_crc32_sum, METH_O,
     "line_crc32_sum(buffer) -> (lines, sum of the crc32 of every line, its newline included)"},
    {NULL, NULL, 0, NULL},
};

static int rowsum_exec(PyObject *module)
{
    build_crc_tables();
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
