/*
 * vpnkit._speedups: the Internet checksum (RFC 1071) in C, and the
 * completion of a partial checksum for links without checksum offload,
 * and the tap's batch of reads (readFrames).
 *
 * Optional: vpnkit.wire.checksum falls back to pure Python (one
 * int.from_bytes and a modulo) when this extension is not built.  The pure
 * version costs about 130 us for a 64 KiB segment, which at offload sizes
 * was most of vpnkit's CPU time; this one is bounded by memory bandwidth.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/*
 * Add the buffer to a running sum of 16-bit words in native byte order.
 * An odd last byte is the high byte of a big-endian word, so only the last
 * piece of a sum may have an odd length.
 */
static uint64_t
add_words(const unsigned char *p, Py_ssize_t n, uint64_t sum)
{
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
        unsigned char last[2] = {p[0], 0};
        uint16_t h;
        memcpy(&h, last, 2);
        sum += h;
    }
    return sum;
}

/*
 * Fold a native-order sum to 16 bits and return it as a big-endian value
 * (RFC 1071 1.2(B): summing in native byte order and swapping the folded
 * result gives the same answer as summing big-endian words).
 */
static uint16_t
fold(uint64_t sum)
{
    while (sum >> 16) {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    uint16_t folded = (uint16_t)sum;
#if PY_LITTLE_ENDIAN
    folded = (uint16_t)((folded >> 8) | (folded << 8));
#endif
    return folded;
}

/*
 * The 16-bit ones'-complement sum of the buffer, as a big-endian value in
 * 0..0xFFFF (0 only for all-zero data; an odd length is padded with a zero
 * byte).
 */
static PyObject *
ones_sum(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) {
        return NULL;
    }
    uint64_t sum;
    Py_BEGIN_ALLOW_THREADS
    sum = add_words(view.buf, view.len, 0);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(fold(sum));
}

/*
 * finishChecksum(header, start, offset, payload=b"") -> header with the
 * checksum at start + offset complete: the complement of the sum of
 * header[start:] (the field holds a partial sum) and payload.  As
 * vpnkit.wire.checksum.pythonFinishChecksum.
 */
static PyObject *
finish_checksum(PyObject *self, PyObject *args)
{
    Py_buffer header, payload = {0};
    Py_ssize_t start, offset;
    if (!PyArg_ParseTuple(args, "y*nn|y*", &header, &start, &offset, &payload)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t position = start + offset;
    if (start < 0 || offset < 0 || position + 2 > header.len || ((header.len - start) & 1)) {
        PyErr_SetString(PyExc_ValueError, "checksum field outside the header, or an odd header");
        goto done;
    }
    const unsigned char *h = header.buf;
    uint64_t sum = add_words(h + start, header.len - start, 0);
    sum = add_words(payload.buf, payload.len, sum);
    uint16_t csum = (uint16_t)~fold(sum);
    result = PyBytes_FromStringAndSize((const char *)h, header.len);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        out[position] = (unsigned char)(csum >> 8);
        out[position + 1] = (unsigned char)(csum & 0xFF);
    }
done:
    PyBuffer_Release(&header);
    PyBuffer_Release(&payload);
    return result;
}

/*
 * A frame read behind a virtio-net header (vnet bytes: flags, gso_type,
 * hdr_len, gso_size, csum_start, csum_offset, native byte order) whose
 * checksum the guest's kernel left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM):
 * complete it in place, as vpnkit.wire.virtio.completeChecksum would, and
 * clear the flag.  A field outside the frame is left for the Python code
 * to count and drop.
 */
static void
complete_partial(unsigned char *p, Py_ssize_t n, Py_ssize_t vnet)
{
    if (vnet < 10 || n < vnet + 14 || !(p[0] & 1))
        return;
    uint16_t start, offset;
    memcpy(&start, p + 6, 2);
    memcpy(&offset, p + 8, 2);
    unsigned char *frame = p + vnet;
    Py_ssize_t length = n - vnet;
    Py_ssize_t position = (Py_ssize_t)start + offset;
    if (position + 2 > length || start >= length)
        return;
    uint16_t csum = (uint16_t)~fold(add_words(frame + start, length - start, 0));
    frame[position] = (unsigned char)(csum >> 8);
    frame[position + 1] = (unsigned char)(csum & 0xFF);
    p[0] &= (unsigned char)~1;
}

/*
 * readFrames(fd, maxFrames, size, vnetHeader=0) -> (frames, error): the
 * frames one wake-up finds on a packet descriptor (a tap: one frame per
 * read), each read at most size bytes, until maxFrames are read or a read
 * would block.  The read that finds nothing ends the batch without
 * raising: error is None then.  End of file appends b"" and ends the
 * batch; any other read error ends it too and is returned as error (an
 * OSError), after the frames read before it.  With vnetHeader (its
 * length, 10), partial checksums are completed on the way (see
 * complete_partial).
 */
static PyObject *
read_frames(PyObject *self, PyObject *args)
{
    int fd;
    Py_ssize_t maxFrames, size, vnet = 0;
    if (!PyArg_ParseTuple(args, "inn|n:readFrames", &fd, &maxFrames, &size, &vnet))
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "readFrames: size must be positive");
        return NULL;
    }
    char *buffer = PyMem_Malloc(size);
    if (buffer == NULL)
        return PyErr_NoMemory();
    PyObject *frames = PyList_New(0);
    PyObject *error = NULL;
    if (frames == NULL)
        goto fail;
    while (PyList_GET_SIZE(frames) < maxFrames) {
        ssize_t n;
        int saved;
        Py_BEGIN_ALLOW_THREADS
        n = read(fd, buffer, (size_t)size);
        saved = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (saved == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto fail;
                continue;
            }
            if (saved == EAGAIN || saved == EWOULDBLOCK)
                break;
            error = PyObject_CallFunction(PyExc_OSError, "is", saved, strerror(saved));
            if (error == NULL)
                goto fail;
            break;
        }
        if (vnet)
            complete_partial((unsigned char *)buffer, n, vnet);
        PyObject *frame = PyBytes_FromStringAndSize(buffer, n);
        if (frame == NULL)
            goto fail;
        int failed = PyList_Append(frames, frame);
        Py_DECREF(frame);
        if (failed)
            goto fail;
        if (n == 0)
            break;
    }
    PyMem_Free(buffer);
    if (error == NULL) {
        error = Py_None;
        Py_INCREF(error);
    }
    PyObject *result = PyTuple_Pack(2, frames, error);
    Py_DECREF(frames);
    Py_DECREF(error);
    return result;
fail:
    PyMem_Free(buffer);
    Py_XDECREF(frames);
    Py_XDECREF(error);
    return NULL;
}

static PyMethodDef methods[] = {
    {"onesSum", ones_sum, METH_VARARGS,
     "onesSum(data) -> the 16-bit ones'-complement sum of data (RFC 1071)."},
    {"finishChecksum", finish_checksum, METH_VARARGS,
     "finishChecksum(header, start, offset, payload=b'') -> header with its partial checksum complete."},
    {"readFrames", read_frames, METH_VARARGS,
     "readFrames(fd, maxFrames, size, vnetHeader=0) -> (frames, error): the frames waiting on a packet descriptor, ending at EAGAIN without raising; partial checksums behind a virtio-net header completed."},
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
