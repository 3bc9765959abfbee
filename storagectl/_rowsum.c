/* storagectl._rowsum: the row count and crc32 sum of a block of text COPY rows in one C pass.
 *
 * line_crc32_sum(buffer) -> (lines, sum): every line ending with '\n' (newline included) and a last
 * one without it, as storagectl.rowsum.line_crc32_sum computes them in Python; sum is exact (not
 * reduced mod 2**64). No Python object per line, and the GIL is released while a large buffer is
 * read, so compression threads run meanwhile.
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

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
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
    return crc ^ 0xFFFFFFFFu;
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

static PyMethodDef rowsum_methods[] = {
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
