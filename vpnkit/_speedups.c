/*
 * vpnkit._speedups: the Internet checksum (RFC 1071) in C.
 *
 * Optional: vpnkit.wire.checksum falls back to pure Python (one
 * int.from_bytes and a modulo) when this extension is not built.  The pure
 * version costs about 130 us for a 64 KiB segment, which at offload sizes
 * was most of vpnkit's CPU time; this one is bounded by memory bandwidth.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/*
 * The 16-bit ones'-complement sum of the buffer, as a big-endian value in
 * 0..0xFFFF (0 only for all-zero data; an odd length is padded with a zero
 * byte).  RFC 1071 1.2(B): summing in native byte order and swapping the
 * folded result gives the same answer as summing big-endian words.
 */
static PyObject *
ones_sum(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) {
        return NULL;
    }
    const unsigned char *p = view.buf;
    Py_ssize_t n = view.len;
    uint64_t sum = 0;

    Py_BEGIN_ALLOW_THREADS
    while (n >= 32) {
        uint32_t w[8];
        memcpy(w, p, 32);
        sum += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
        p += 32;
        n -= 32;
    }
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        sum += h;
        p += 2;
        n -= 2;
    }
    if (n) {
        /* The last odd byte is the high byte of a big-endian word. */
        unsigned char last[2] = {p[0], 0};
        uint16_t h;
        memcpy(&h, last, 2);
        sum += h;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    while (sum >> 16) {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    uint16_t folded = (uint16_t)sum;
#if PY_LITTLE_ENDIAN
    folded = (uint16_t)((folded >> 8) | (folded << 8));
#endif
    return PyLong_FromUnsignedLong(folded);
}

static PyMethodDef methods[] = {
    {"onesSum", ones_sum, METH_VARARGS,
     "onesSum(data) -> the 16-bit ones'-complement sum of data (RFC 1071)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "vpnkit._speedups",
    "C versions of vpnkit's hottest pure functions.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
