/* The models' step-by-step loops out of training, in C: where a small model's latency goes when
   each step is a handful of NumPy calls (bench/README.md). Built at install where there is a C
   compiler (pyproject.toml, optional); without it the same maths runs in NumPy.

   gru_steps: the recurrence of a bidirectional GRU layer (profner_models.models.recurrent).
   viterbi: a linear-chain CRF's best paths (profner_models.models.heads.viterbi).

   gru_steps(gates_in, w_hidden, b_new, out) with float32 C-contiguous buffers:
     gates_in  [T, 2, B, 3H]  each step's input projection, both directions (the backward one
                              already read in its own order), biases and the reset/update
                              gates' signs folded in as recurrent._numpy_weights lays them out
     w_hidden  [2, H, 3H]     hidden weights (reset/update columns negated)
     b_new     [2, H]         the new gate's hidden bias
     out       [2, B, T, H]   written: every step's state, per direction and row
   Per step, direction and row (the maths of _gru_layer's NumPy loop and of nn.GRU):
     g = h @ W;  r, z = 1 / (1 + exp(gates_in[:2H] + g[:2H]))   (signs folded: the sigmoids)
     n = tanh(gates_in[2H:] + r * (g[2H:] + b_new));  h = n + z * (h - n)
   viterbi(emissions, lengths, start, transitions, end, out):
     emissions [B, W, T] float32, lengths [B] int64 (each 1..W), start [T], transitions
     [from, to] [T, T], end [T] float32; out [B, W] int64 written: each row's best tags in its
     first lengths[b] places. NumPy's order of additions and first-maximum ties, so the paths
     are those of the NumPy loop bit for bit.
   The GIL is released while they run. One translation unit, no NumPy headers: the buffer
   protocol gives the shapes. On x86-64 with GCC the GRU step loop is also built for AVX2 + FMA
   (x86-64-v3) and picked at load time where the CPU has them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

/* exp(x) with Cephes' expf polynomial (relative error ~2e-7), x clamped to [-87, 88] so
   2^n stays a normal float: no calls and no branches, so the gate loops below vectorize
   (libm's expf and tanhf, one call per gate value, were 60% of a step). */
static inline float exp_poly(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (|x / ln 2| < 2^22 here) */
    const float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)fn + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

CLONES
static void steps(const float *gates_in, const float *w_hidden, const float *b_new, float *out,
                  Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, float *g, const float *zeros) {
    /* g: [B, 3H], the hidden products of one step and direction for every row; the product
       runs hidden unit by hidden unit over all rows, so W's row stays in L1 across them */
    const Py_ssize_t G = 3 * H;
    for (Py_ssize_t t = 0; t < T; t++) {
        for (Py_ssize_t d = 0; d < 2; d++) {
            const float *w = w_hidden + d * H * G;
            const float *bn = b_new + d * H;
            memset(g, 0, (size_t)(B * G) * sizeof(float));
            if (t) {
                for (Py_ssize_t k = 0; k < H; k++) {
                    const float *row = w + k * G;
                    for (Py_ssize_t b = 0; b < B; b++) {
                        const float hk = out[((d * B + b) * T + t - 1) * H + k];
                        float *gb = g + b * G;
                        for (Py_ssize_t j = 0; j < G; j++) gb[j] += hk * row[j];
                    }
                }
            }
            for (Py_ssize_t b = 0; b < B; b++) {
                const float *given = gates_in + ((t * 2 + d) * B + b) * G;
                float *gb = g + b * G;
                float *h = out + ((d * B + b) * T + t) * H;
                const float *prev = t ? h - H : zeros;
                for (Py_ssize_t j = 0; j < 2 * H; j++) gb[j] = 1.0f / (1.0f + exp_poly(given[j] + gb[j]));
                for (Py_ssize_t j = 0; j < H; j++) {  /* tanh(v) = 1 - 2 / (1 + exp(2v)) */
                    const float v = given[2 * H + j] + gb[j] * (gb[2 * H + j] + bn[j]);
                    const float n = 1.0f - 2.0f / (1.0f + exp_poly(2.0f * v));
                    h[j] = n + gb[H + j] * (prev[j] - n);
                }
            }
        }
    }
}

/* ``obj``'s buffer as ``view``: C-contiguous, ``ndim`` dims, of ``kind`` 'f' (float32) or 'i'
   (int64, which NumPy writes 'l' or 'q' by platform); else -1 with a ValueError naming it */
static int take(PyObject *obj, Py_buffer *view, int ndim, int writable, const char *name,
                char kind) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *format = view->format ? view->format : "";
    if (*format == '<' || *format == '=' || *format == '@') format++;
    const int ok = kind == 'f' ? view->itemsize == 4 && !strcmp(format, "f")
                               : view->itemsize == 8 && (!strcmp(format, "l") || !strcmp(format, "q"));
    if (view->ndim != ndim || !ok) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous %s array of %d dims", name,
                     kind == 'f' ? "float32" : "int64", ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *gru_steps(PyObject *self, PyObject *args) {
    PyObject *objs[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &objs[3])) return NULL;
    static const char *names[4] = {"gates_in", "w_hidden", "b_new", "out"};
    static const int dims[4] = {4, 3, 2, 4};
    Py_buffer v[4];
    int taken = 0;
    PyObject *result = NULL;
    for (; taken < 4; taken++)
        if (take(objs[taken], &v[taken], dims[taken], taken == 3, names[taken], 'f') < 0) goto done;
    {
        const Py_ssize_t T = v[0].shape[0], B = v[0].shape[2], H = v[1].shape[1];
        if (v[0].shape[1] != 2 || v[0].shape[3] != 3 * H || v[1].shape[0] != 2
            || v[1].shape[2] != 3 * H || v[2].shape[0] != 2 || v[2].shape[1] != H
            || v[3].shape[0] != 2 || v[3].shape[1] != B || v[3].shape[2] != T
            || v[3].shape[3] != H) {
            PyErr_SetString(PyExc_ValueError,
                            "shapes: gates_in [T, 2, B, 3H], w_hidden [2, H, 3H], b_new [2, H], "
                            "out [2, B, T, H]");
            goto done;
        }
        /* the gates of one step's rows [B, 3H], then H zeros (the state before the first) */
        float *g = PyMem_RawCalloc((size_t)(B * 3 * H + H > 0 ? B * 3 * H + H : 1), sizeof(float));
        if (!g) {
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        steps(v[0].buf, v[1].buf, v[2].buf, v[3].buf, T, B, H, g, g + B * 3 * H);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(g);
        result = Py_NewRef(Py_None);
    }
done:
    while (taken-- > 0) PyBuffer_Release(&v[taken]);
    return result;
}


static void best_paths(const float *emissions, const int64_t *lengths, const float *start,
                       const float *transitions, const float *end, int64_t *out, Py_ssize_t B,
                       Py_ssize_t W, Py_ssize_t T, float *score, float *next, int32_t *history) {
    for (Py_ssize_t b = 0; b < B; b++) {
        const float *e = emissions + b * W * T;
        const Py_ssize_t n = (Py_ssize_t)lengths[b];
        for (Py_ssize_t j = 0; j < T; j++) score[j] = start[j] + e[j];
        for (Py_ssize_t i = 1; i < n; i++) {
            const float *ei = e + i * T;
            for (Py_ssize_t j = 0; j < T; j++) {
                /* NumPy: score[from] + (transitions[from, to] + emission[to]), first maximum */
                float best = score[0] + (transitions[j] + ei[j]);
                int32_t arg = 0;
                for (Py_ssize_t k = 1; k < T; k++) {
                    const float v = score[k] + (transitions[k * T + j] + ei[j]);
                    if (v > best) {
                        best = v;
                        arg = (int32_t)k;
                    }
                }
                next[j] = best;
                history[(i - 1) * T + j] = arg;
            }
            memcpy(score, next, (size_t)T * sizeof(float));
        }
        Py_ssize_t tag = 0;
        float best = score[0] + end[0];
        for (Py_ssize_t j = 1; j < T; j++)
            if (score[j] + end[j] > best) {
                best = score[j] + end[j];
                tag = j;
            }
        int64_t *path = out + b * W;
        path[n - 1] = tag;
        for (Py_ssize_t i = n - 1; i > 0; i--) {
            tag = history[(i - 1) * T + tag];
            path[i - 1] = tag;
        }
    }
}

static PyObject *viterbi(PyObject *self, PyObject *args) {
    PyObject *objs[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4],
                          &objs[5]))
        return NULL;
    static const char *names[6] = {"emissions", "lengths", "start", "transitions", "end", "out"};
    static const int dims[6] = {3, 1, 1, 2, 1, 2};
    static const char kinds[6] = {'f', 'i', 'f', 'f', 'f', 'i'};
    Py_buffer v[6];
    int taken = 0;
    PyObject *result = NULL;
    for (; taken < 6; taken++)
        if (take(objs[taken], &v[taken], dims[taken], taken == 5, names[taken], kinds[taken]) < 0)
            goto done;
    {
        const Py_ssize_t B = v[0].shape[0], W = v[0].shape[1], T = v[0].shape[2];
        if (v[1].shape[0] != B || v[2].shape[0] != T || v[3].shape[0] != T || v[3].shape[1] != T
            || v[4].shape[0] != T || v[5].shape[0] != B || v[5].shape[1] != W || T < 1) {
            PyErr_SetString(PyExc_ValueError,
                            "shapes: emissions [B, W, T], lengths [B], start [T], transitions "
                            "[T, T], end [T], out [B, W]");
            goto done;
        }
        const int64_t *lengths = v[1].buf;
        for (Py_ssize_t b = 0; b < B; b++)
            if (lengths[b] < 1 || lengths[b] > W) {
                PyErr_Format(PyExc_ValueError, "lengths[%zd] = %lld: must be in 1..%zd", b,
                             (long long)lengths[b], W);
                goto done;
            }
        float *scores = PyMem_RawMalloc((size_t)(2 * T) * sizeof(float));
        int32_t *history = PyMem_RawMalloc((size_t)(W > 1 ? (W - 1) * T : 1) * sizeof(int32_t));
        if (!scores || !history) {
            PyMem_RawFree(scores);
            PyMem_RawFree(history);
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        best_paths(v[0].buf, lengths, v[2].buf, v[3].buf, v[4].buf, v[5].buf, B, W, T, scores,
                   scores + T, history);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(scores);
        PyMem_RawFree(history);
        result = Py_NewRef(Py_None);
    }
done:
    while (taken-- > 0) PyBuffer_Release(&v[taken]);
    return result;
}

static PyMethodDef methods[] = {
    {"gru_steps", gru_steps, METH_VARARGS,
     "gru_steps(gates_in, w_hidden, b_new, out): a bidirectional GRU layer's steps (module doc)"},
    {"viterbi", viterbi, METH_VARARGS,
     "viterbi(emissions, lengths, start, transitions, end, out): best CRF paths (module doc)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "The models' step loops in C (a BiGRU layer, CRF Viterbi).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
