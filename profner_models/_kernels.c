/* The models' step-by-step loops in C: where a small model's time goes when each step is a
   handful of NumPy calls or dispatched ops (bench/README.md). Built at install where there is a
   C compiler (pyproject.toml, optional); without it the same maths runs in NumPy (prediction)
   or in PyTorch's packed GRU and the CRF's tree (training).

   gru_train_forward, gru_train_backward: the recurrence of a bidirectional GRU layer, with
   what its backward needs saved (in training), and its gradients (recurrent.gru_layer_steps, in training and
   at prediction; documented where defined). The rows step together, longest first, so the
   hidden products of four rows share each load of W (add_product4); a row's sums are the same
   as stepped alone, bit for bit.
   viterbi: a linear-chain CRF's best paths (profner_models.models.heads.viterbi).
   crf_forward, crf_backward: its log partition function and gradients, step by step
   (profner_models.models.crf; documented where defined).
   q4_bag_means: means of bags of rows of a 4-bit (Q4_0) table, the e5 piece vectors of words a
   model never saw (profner_models.vectors.e5.E5Static.bag_means; documented where defined).

   viterbi(emissions, lengths, start, transitions, end, out):
     emissions [B, W, T] float32, lengths [B] int64 (each 1..W), start [T], transitions
     [from, to] [T, T], end [T] float32; out [B, W] int64 written: each row's best tags in its
     first lengths[b] places. NumPy's order of additions and first-maximum ties, so the paths
     are those of the NumPy loop bit for bit.
   The GIL is released while they run. One translation unit, no NumPy headers: the buffer
   protocol gives the shapes. On x86-64 with GCC the GRU step loops are also built for AVX2 + FMA
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

/* tanh(v) = 1 - 2 / (1 + exp(2v)), branch-free (exp_poly) */
static inline float tanh_poly(float v) { return 1.0f - 2.0f / (1.0f + exp_poly(2.0f * v)); }

/* g[0:n] += h[0:m] @ w[m, n] (w row-major): each 32- then 8-wide column block of g summed in
   registers over the m rows of w, so a step's product costs one load per multiply-add. The two
   block loops are spelled out: one inline helper taking the width as a parameter measured a
   2.2x slower forward (GCC 12, hidden 96) */
static inline void add_product(const float *h, const float *w, float *g, Py_ssize_t m,
                               Py_ssize_t n) {
    Py_ssize_t j = 0;
    for (; j + 32 <= n; j += 32) {
        float acc[32];
        memcpy(acc, g + j, sizeof acc);
        for (Py_ssize_t k = 0; k < m; k++) {
            const float hk = h[k], *wk = w + k * n + j;
            for (int i = 0; i < 32; i++) acc[i] += hk * wk[i];
        }
        memcpy(g + j, acc, sizeof acc);
    }
    for (; j + 8 <= n; j += 8) {
        float acc[8];
        memcpy(acc, g + j, sizeof acc);
        for (Py_ssize_t k = 0; k < m; k++) {
            const float hk = h[k], *wk = w + k * n + j;
            for (int i = 0; i < 8; i++) acc[i] += hk * wk[i];
        }
        memcpy(g + j, acc, sizeof acc);
    }
    for (; j < n; j++) {
        float acc = g[j];
        for (Py_ssize_t k = 0; k < m; k++) acc += h[k] * w[k * n + j];
        g[j] = acc;
    }
}

/* g[r][0:n] += h[r][0:m] @ w[m, n] for four rows at once: each 16- then 8-wide column block
   of w is loaded once for the four rows (a row at a time, a step of hidden 256 streams w's 786
   KB per row), the 8 (4) partial sums in registers. GCC's vector extension spells it (its
   auto-vectorizer leaves the four-row loop scalar); other compilers take a row at a time. */
#if defined(__GNUC__)
typedef float f8 __attribute__((vector_size(32), aligned(4), may_alias));

static inline void add_product4(const float *const *h, const float *w, float *const *g,
                                Py_ssize_t m, Py_ssize_t n) {
    Py_ssize_t j = 0;
    for (; j + 16 <= n; j += 16) {
        f8 a0 = *(const f8 *)(g[0] + j), b0 = *(const f8 *)(g[0] + j + 8);
        f8 a1 = *(const f8 *)(g[1] + j), b1 = *(const f8 *)(g[1] + j + 8);
        f8 a2 = *(const f8 *)(g[2] + j), b2 = *(const f8 *)(g[2] + j + 8);
        f8 a3 = *(const f8 *)(g[3] + j), b3 = *(const f8 *)(g[3] + j + 8);
        for (Py_ssize_t k = 0; k < m; k++) {
            const f8 lo = *(const f8 *)(w + k * n + j), hi = *(const f8 *)(w + k * n + j + 8);
            const float h0 = h[0][k], h1 = h[1][k], h2 = h[2][k], h3 = h[3][k];
            a0 += h0 * lo; b0 += h0 * hi;
            a1 += h1 * lo; b1 += h1 * hi;
            a2 += h2 * lo; b2 += h2 * hi;
            a3 += h3 * lo; b3 += h3 * hi;
        }
        *(f8 *)(g[0] + j) = a0; *(f8 *)(g[0] + j + 8) = b0;
        *(f8 *)(g[1] + j) = a1; *(f8 *)(g[1] + j + 8) = b1;
        *(f8 *)(g[2] + j) = a2; *(f8 *)(g[2] + j + 8) = b2;
        *(f8 *)(g[3] + j) = a3; *(f8 *)(g[3] + j + 8) = b3;
    }
    for (; j + 8 <= n; j += 8) {
        f8 a0 = *(const f8 *)(g[0] + j), a1 = *(const f8 *)(g[1] + j);
        f8 a2 = *(const f8 *)(g[2] + j), a3 = *(const f8 *)(g[3] + j);
        for (Py_ssize_t k = 0; k < m; k++) {
            const f8 wk = *(const f8 *)(w + k * n + j);
            a0 += h[0][k] * wk;
            a1 += h[1][k] * wk;
            a2 += h[2][k] * wk;
            a3 += h[3][k] * wk;
        }
        *(f8 *)(g[0] + j) = a0;
        *(f8 *)(g[1] + j) = a1;
        *(f8 *)(g[2] + j) = a2;
        *(f8 *)(g[3] + j) = a3;
    }
    for (; j < n; j++)
        for (int r = 0; r < 4; r++) {
            float acc = g[r][j];
            for (Py_ssize_t k = 0; k < m; k++) acc += h[r][k] * w[k * n + j];
            g[r][j] = acc;
        }
}
#else
static inline void add_product4(const float *const *h, const float *w, float *const *g,
                                Py_ssize_t m, Py_ssize_t n) {
    for (int r = 0; r < 4; r++) add_product(h[r], w, g[r], m, n);
}
#endif

/* One step's gates and state (train_forward), each array apart: restrict lets the loops vectorize */
static inline void forward_gates(const float *restrict x, const float *restrict g,
                                 const float *restrict prev, float *restrict r,
                                 float *restrict z, float *restrict n, float *restrict hn,
                                 float *restrict h, Py_ssize_t H) {
    for (Py_ssize_t j = 0; j < H; j++) r[j] = 1.0f / (1.0f + exp_poly(-(x[j] + g[j])));
    for (Py_ssize_t j = 0; j < H; j++) z[j] = 1.0f / (1.0f + exp_poly(-(x[H + j] + g[H + j])));
    for (Py_ssize_t j = 0; j < H; j++) {
        hn[j] = g[2 * H + j];
        n[j] = tanh_poly(x[2 * H + j] + r[j] * hn[j]);
        h[j] = n[j] + z[j] * (prev[j] - n[j]);
    }
}

/* One step back (train_backward): d_gates r | z | n of the input projection and of the hidden
   product (its n part scaled by r); carry in: the gradient from the step after, out: its
   direct part to the state before (dh z) */
static inline void backward_gates(const float *restrict r, const float *restrict z,
                                  const float *restrict n, const float *restrict hn,
                                  const float *restrict prev, const float *restrict given,
                                  float *restrict carry, float *restrict dgi,
                                  float *restrict dgh, Py_ssize_t H) {
    for (Py_ssize_t j = 0; j < H; j++) {
        const float dh = given[j] + carry[j];
        const float dn = dh * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
        const float dr = dn * hn[j] * r[j] * (1.0f - r[j]);
        const float dz = dh * (prev[j] - n[j]) * z[j] * (1.0f - z[j]);
        carry[j] = dh * z[j];
        dgi[j] = dr;
        dgh[j] = dr;
        dgi[H + j] = dz;
        dgh[H + j] = dz;
        dgi[2 * H + j] = dn;
        dgh[2 * H + j] = dn * r[j];
    }
}

/* order: 0 .. B - 1 sorted by lengths, longest first (stable; an insertion sort: B is a batch) */
static void by_length(const int64_t *lengths, Py_ssize_t B, Py_ssize_t *order) {
    for (Py_ssize_t b = 0; b < B; b++) {
        Py_ssize_t q = b;
        for (; q > 0 && lengths[order[q - 1]] < lengths[b]; q--) order[q] = order[q - 1];
        order[q] = b;
    }
}

/* A bidirectional GRU layer's recurrence in training, with nn.GRU's own weights (no folding:
   they change every step), over rows of different lengths as a packed nn.GRU runs them: the
   forward direction reads a row's positions 0 .. length - 1, the backward one length - 1 .. 0,
   and the states at padding are zeros (pad_packed_sequence's). Buffers:
     gates_in [B, T, 6H]     x W_ih^T + b_ih of both directions (r | z | n each)
     lengths  [B] int64      each in 1..T
     w_hidden [2, H, 3H]     W_hh^T per direction;  b_hidden [2, 3H]  b_hh
     out      [B, T, 2H]     every position's states, forward | backward
     last     [B, 2H]        each direction's state after its last step (the forward one at
                             length - 1, the backward one at 0)
     saved    [2, B, T, 5H]  r | z | n | W_hn h + b_hn | the state before: what the backward
                             needs (zeros at padding; only the padding is cleared, the rest
                             written); None at prediction (nothing kept: the gates go through
                             a 5H scratch)
   g = h W + b;  r, z = sigmoid(x_r + g_r), sigmoid(x_z + g_z);  n = tanh(x_n + r g_n);
   h' = n + z (h - n): nn.GRU's maths. */
CLONES
static void train_forward(const float *gates_in, const int64_t *lengths, const float *w_hidden,
                          const float *b_hidden, float *out, float *last, float *saved,
                          Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, float *g, const float *zeros,
                          float *scratch, Py_ssize_t *order) {
    /* g [B, 3H]: the hidden products of one step, a row per active row; order: the rows
       longest first, so the rows still stepping at step i are order[0 .. active) and their
       products run four rows at a time (add_product4); scratch [5H]: a step's gates where
       saved is NULL */
    const Py_ssize_t G = 3 * H;
    by_length(lengths, B, order);
    for (Py_ssize_t b = 0; b < B; b++) {
        const Py_ssize_t n = (Py_ssize_t)lengths[b];
        memset(out + (b * T + n) * 2 * H, 0, (size_t)((T - n) * 2 * H) * sizeof(float));
        for (Py_ssize_t d = 0; saved && d < 2; d++)
            memset(saved + ((d * B + b) * T + n) * 5 * H, 0, (size_t)((T - n) * 5 * H) * sizeof(float));
    }
    for (Py_ssize_t d = 0; d < 2; d++) {
        const float *w = w_hidden + d * H * G;
        Py_ssize_t active = B;
        for (Py_ssize_t i = 0; i < T && active; i++) {
            while (active && lengths[order[active - 1]] <= i) active--;
            const float *prev[4];
            float *gs[4];
            Py_ssize_t q = 0;
            for (; q < active; q++) {
                const Py_ssize_t b = order[q], n = (Py_ssize_t)lengths[b];
                memcpy(g + q * G, b_hidden + d * G, (size_t)G * sizeof(float));
                if (!i) continue;
                prev[q % 4] = out + (b * T + (d ? n - i : i - 1)) * 2 * H + d * H;
                gs[q % 4] = g + q * G;
                if (q % 4 == 3) add_product4(prev, w, gs, H, G);
            }
            if (i)
                for (Py_ssize_t r = active - active % 4; r < active; r++)
                    add_product(prev[r % 4], w, gs[r % 4], H, G);
            for (q = 0; q < active; q++) {
                const Py_ssize_t b = order[q], n = (Py_ssize_t)lengths[b];
                const Py_ssize_t p = d ? n - 1 - i : i;
                const float *before = i ? out + (b * T + (d ? n - i : i - 1)) * 2 * H + d * H : zeros;
                float *s = saved ? saved + ((d * B + b) * T + p) * 5 * H : scratch;
                float *h = out + (b * T + p) * 2 * H + d * H;
                if (saved) memcpy(s + 4 * H, before, (size_t)H * sizeof(float));
                forward_gates(gates_in + (b * T + p) * 2 * G + d * G, g + q * G, before, s, s + H,
                              s + 2 * H, s + 3 * H, h, H);
            }
        }
        for (Py_ssize_t b = 0; b < B; b++)  /* forward: after position length - 1; backward: 0 */
            memcpy(last + (b * 2 + d) * H,
                   out + (b * T + (d ? 0 : (Py_ssize_t)lengths[b] - 1)) * 2 * H + d * H,
                   (size_t)H * sizeof(float));
    }
}

/* Back through train_forward's steps, each row's last to first. d_out [B, T, 2H] and d_last
   [B, 2H]: the loss's gradients at every state and at the last ones (NULL: zeros); written: d_gates_in [B, T, 6H] (the input projections' gradients)
   and d_hidden [2, B, T, 3H] (those of each step's hidden product h W + b, the new gate's
   scaled by r), zeros at padding: the caller takes the weights' gradients from d_hidden and
   saved's states in one matrix product. Work: wt [2, 3H, H] (W transposed), carry [H] (the
   gradient reaching a state from the step after it, at first d_last's), H zeros. */
CLONES
static void train_backward(const int64_t *lengths, const float *w_hidden, const float *saved,
                           const float *d_out, const float *d_last, float *d_gates_in,
                           float *d_hidden, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                           float *carry, float *wt, const float *zeros, Py_ssize_t *order) {
    /* carry [B, H]: per row, as train_forward's g, by the rows' order longest first */
    const Py_ssize_t G = 3 * H;
    Py_ssize_t longest = 0;
    for (Py_ssize_t d = 0; d < 2; d++)
        for (Py_ssize_t k = 0; k < H; k++)
            for (Py_ssize_t j = 0; j < G; j++) wt[(d * G + j) * H + k] = w_hidden[(d * H + k) * G + j];
    by_length(lengths, B, order);
    for (Py_ssize_t b = 0; b < B; b++) {
        const Py_ssize_t n = (Py_ssize_t)lengths[b];
        if (n > longest) longest = n;
        memset(d_gates_in + (b * T + n) * 2 * G, 0, (size_t)((T - n) * 2 * G) * sizeof(float));
        for (Py_ssize_t d = 0; d < 2; d++)
            memset(d_hidden + ((d * B + b) * T + n) * G, 0, (size_t)((T - n) * G) * sizeof(float));
    }
    for (Py_ssize_t d = 0; d < 2; d++) {
        for (Py_ssize_t q = 0; q < B; q++) {
            const Py_ssize_t b = order[q];
            if (d_last) memcpy(carry + q * H, d_last + (b * 2 + d) * H, (size_t)H * sizeof(float));
            else memset(carry + q * H, 0, (size_t)H * sizeof(float));
        }
        Py_ssize_t active = 0;
        for (Py_ssize_t i = longest - 1; i >= 0; i--) {
            while (active < B && lengths[order[active]] > i) active++;
            const float *dghs[4];
            float *carries[4];
            for (Py_ssize_t q = 0; q < active; q++) {
                const Py_ssize_t b = order[q], n = (Py_ssize_t)lengths[b];
                const Py_ssize_t p = d ? n - 1 - i : i;
                const float *s = saved + ((d * B + b) * T + p) * 5 * H;
                float *dgh = d_hidden + ((d * B + b) * T + p) * G;
                backward_gates(s, s + H, s + 2 * H, s + 3 * H, s + 4 * H,
                               d_out ? d_out + (b * T + p) * 2 * H + d * H : zeros, carry + q * H,
                               d_gates_in + (b * T + p) * 2 * G + d * G, dgh, H);
                if (!i) continue;
                dghs[q % 4] = dgh;
                carries[q % 4] = carry + q * H;
                if (q % 4 == 3) add_product4(dghs, wt + d * G * H, carries, G, H);
            }
            if (i)
                for (Py_ssize_t r = active - active % 4; r < active; r++)
                    add_product(dghs[r % 4], wt + d * G * H, carries[r % 4], G, H);
        }
    }
}

/* ``obj``'s buffer as ``view``: C-contiguous, ``ndim`` dims, of ``kind`` 'f' (float32), 'd'
   (float64), 'u' (uint8) or 'i' (int64, which NumPy writes 'l' or 'q' by platform); else -1
   with a ValueError naming it */
static int take(PyObject *obj, Py_buffer *view, int ndim, int writable, const char *name,
                char kind) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *format = view->format ? view->format : "";
    if (*format == '<' || *format == '=' || *format == '@') format++;
    const int ok = kind == 'f'   ? view->itemsize == 4 && !strcmp(format, "f")
                   : kind == 'd' ? view->itemsize == 8 && !strcmp(format, "d")
                   : kind == 'u' ? view->itemsize == 1 && !strcmp(format, "B")
                                 : view->itemsize == 8 && (!strcmp(format, "l") || !strcmp(format, "q"));
    if (view->ndim != ndim || !ok) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous %s array of %d dims", name,
                     kind == 'f'   ? "float32"
                     : kind == 'd' ? "float64"
                     : kind == 'u' ? "uint8"
                                   : "int64",
                     ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The buffers of the ``count`` arguments in ``args``: ``kinds[i]`` 'f' float32, 'd' float64,
   'i' int64, 'u' uint8, 'o' float32 or None (then v[i].buf is NULL); the last ``writable`` of
   them written. */
static int take_all(PyObject *args, Py_buffer *v, Py_ssize_t count, const char *const *names,
                    const int *dims, const char *kinds, Py_ssize_t writable) {
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) != count) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments", count);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *obj = PyTuple_GET_ITEM(args, i);
        if (kinds[i] == 'o' && obj == Py_None) {
            memset(&v[i], 0, sizeof v[i]);
            continue;
        }
        const char kind = kinds[i] == 'o' ? 'f' : kinds[i];
        if (take(obj, &v[i], dims[i], i >= count - writable, names[i], kind) < 0) {
            while (i-- > 0) PyBuffer_Release(&v[i]);
            return -1;
        }
    }
    return 0;
}

/* whether ``v`` has shape (a, b, c, d) in its first dims (-1: any), or is absent */
static int shaped(const Py_buffer *v, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c, Py_ssize_t d) {
    const Py_ssize_t want[4] = {a, b, c, d};
    if (!v->buf) return 1;  /* an absent optional one */
    for (int i = 0; i < v->ndim && i < 4; i++)
        if (want[i] >= 0 && v->shape[i] != want[i]) return 0;
    return 1;
}

static int lengths_within(const Py_buffer *v, Py_ssize_t T) {
    const int64_t *lengths = v->buf;
    for (Py_ssize_t b = 0; b < v->shape[0]; b++)
        if (lengths[b] < 1 || lengths[b] > T) {
            PyErr_Format(PyExc_ValueError, "lengths[%zd] = %lld: must be in 1..%zd", b,
                         (long long)lengths[b], T);
            return 0;
        }
    return 1;
}

static PyObject *gru_train_forward(PyObject *self, PyObject *args) {
    static const char *const names[7] = {"gates_in", "lengths", "w_hidden", "b_hidden", "out",
                                         "last", "saved"};
    static const int dims[7] = {3, 1, 3, 2, 3, 2, 4};
    Py_buffer v[7];
    if (take_all(args, v, 7, names, dims, "fiffffo", 3) < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t B = v[0].shape[0], T = v[0].shape[1], H = v[2].shape[1];
    if (!shaped(&v[0], B, T, 6 * H, -1) || !shaped(&v[1], B, -1, -1, -1)
        || !shaped(&v[2], 2, H, 3 * H, -1) || !shaped(&v[3], 2, 3 * H, -1, -1)
        || !shaped(&v[4], B, T, 2 * H, -1) || !shaped(&v[5], B, 2 * H, -1, -1)
        || !shaped(&v[6], 2, B, T, 5 * H)) {
        PyErr_SetString(PyExc_ValueError, "shapes: gates_in [B, T, 6H], lengths [B], w_hidden "
                        "[2, H, 3H], b_hidden [2, 3H], out [B, T, 2H], last [B, 2H], saved "
                        "[2, B, T, 5H]");
        goto done;
    }
    if (!lengths_within(&v[1], T)) goto done;
    {
        /* the rows' hidden products [B, 3H], H zeros, a 5H scratch, the rows' order */
        float *g = PyMem_RawCalloc((size_t)(B * 3 * H + 6 * H + 1), sizeof(float));
        Py_ssize_t *order = PyMem_RawMalloc((size_t)(B + 1) * sizeof(Py_ssize_t));
        if (!g || !order) {
            PyMem_RawFree(g);
            PyMem_RawFree(order);
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        train_forward(v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, v[5].buf, v[6].buf, T, B,
                      H, g, g + B * 3 * H, g + B * 3 * H + H, order);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(g);
        PyMem_RawFree(order);
        result = Py_NewRef(Py_None);
    }
done:
    for (int i = 0; i < 7; i++) PyBuffer_Release(&v[i]);
    return result;
}

static PyObject *gru_train_backward(PyObject *self, PyObject *args) {
    static const char *const names[7] = {"lengths", "w_hidden", "saved", "d_out", "d_last",
                                         "d_gates_in", "d_hidden"};
    static const int dims[7] = {1, 3, 4, 3, 2, 3, 4};
    Py_buffer v[7];
    if (take_all(args, v, 7, names, dims, "iffooff", 2) < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t H = v[1].shape[1], B = v[2].shape[1], T = v[2].shape[2];
    if (!shaped(&v[0], B, -1, -1, -1) || !shaped(&v[1], 2, H, 3 * H, -1)
        || !shaped(&v[2], 2, B, T, 5 * H) || !shaped(&v[3], B, T, 2 * H, -1)
        || !shaped(&v[4], B, 2 * H, -1, -1) || !shaped(&v[5], B, T, 6 * H, -1)
        || !shaped(&v[6], 2, B, T, 3 * H)) {
        PyErr_SetString(PyExc_ValueError, "shapes: lengths [B], w_hidden [2, H, 3H], saved "
                        "[2, B, T, 5H], d_out [B, T, 2H] or None, d_last [B, 2H] or None, "
                        "d_gates_in [B, T, 6H], d_hidden [2, B, T, 3H]");
        goto done;
    }
    if (!lengths_within(&v[0], T)) goto done;
    {
        /* the rows' carries [B, H], W transposed [2, 3H, H], H zeros, the rows' order */
        float *buf = PyMem_RawCalloc((size_t)(B * H + 6 * H * H + H + 1), sizeof(float));
        Py_ssize_t *order = PyMem_RawMalloc((size_t)(B + 1) * sizeof(Py_ssize_t));
        if (!buf || !order) {
            PyMem_RawFree(buf);
            PyMem_RawFree(order);
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        train_backward(v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, v[5].buf, v[6].buf, T,
                       B, H, buf, buf + B * H, buf + B * H + 6 * H * H, order);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(buf);
        PyMem_RawFree(order);
        result = Py_NewRef(Py_None);
    }
done:
    for (int i = 0; i < 7; i++) PyBuffer_Release(&v[i]);
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
    static const char *const names[6] = {"emissions", "lengths", "start", "transitions", "end",
                                         "out"};
    static const int dims[6] = {3, 1, 1, 2, 1, 2};
    Py_buffer v[6];
    if (take_all(args, v, 6, names, dims, "fifffi", 1) < 0) return NULL;
    PyObject *result = NULL;
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
    for (int i = 0; i < 6; i++) PyBuffer_Release(&v[i]);
    return result;
}

/* A linear-chain CRF's log partition function and its gradients, row by row over time (the
   forward-backward algorithm in the log domain), for a CPU where the tree of batched log-matrix
   products (models/crf.py) costs T^3 per word against T^2 here. In each step the sums are
   scaled: a row's largest value out of the exp, and each column (forward) or row (backward) of
   the transitions by its largest, so no term of a sum underflows unless it is ~1e-308 of the
   largest. Buffers:
     emissions [B, W, T], lengths [B] int64 (each 1..W), start [T], transitions [from, to] [T, T],
     end [T] float32;
     crf_forward writes log_z [B] and alpha [B, W, T] float64 (each prefix's log-sum of its
     paths ending in each tag, emission included; zeros past a row's length). The sums run in
     double: a row's log-sums grow with its length, and in float their rounding would add up
     step after step (marginals ~3e-4 off over 128 words, against ~3e-5 for the tree in float);
     crf_backward reads alpha and the gradient of the loss at log_z (d_log_z [B]) and writes the
     gradients at emissions [B, W, T] (zeros at padding), start [T], transitions [T, T], end
     [T]: each tag's (and pair of tags') marginal probability times d_log_z[b], summed over the
     rows. Work (double): [T, T] exp(transitions - column or row max), [T] shifts, [T] scratch,
     [W, T] beta of a row, [T, T] a row's pair probabilities. */
static void crf_alpha(const float *emissions, const int64_t *lengths, const float *start,
                      const float *transitions, const float *end, float *log_z, double *alpha,
                      Py_ssize_t B, Py_ssize_t W, Py_ssize_t T, double *scaled, double *shift,
                      double *p) {
    for (Py_ssize_t j = 0; j < T; j++) {
        double top = transitions[j];
        for (Py_ssize_t i = 1; i < T; i++) top = fmax(top, transitions[i * T + j]);
        shift[j] = top;
        for (Py_ssize_t i = 0; i < T; i++) scaled[i * T + j] = exp(transitions[i * T + j] - top);
    }
    for (Py_ssize_t b = 0; b < B; b++) {
        const float *e = emissions + b * W * T;
        double *a = alpha + b * W * T;
        const Py_ssize_t n = (Py_ssize_t)lengths[b];
        for (Py_ssize_t j = 0; j < T; j++) a[j] = (double)start[j] + e[j];
        for (Py_ssize_t t = 1; t < n; t++) {
            const double *before = a + (t - 1) * T;
            double top = before[0];
            for (Py_ssize_t i = 1; i < T; i++) top = fmax(top, before[i]);
            for (Py_ssize_t i = 0; i < T; i++) p[i] = exp(before[i] - top);
            for (Py_ssize_t j = 0; j < T; j++) {
                double sum = 0.0;
                for (Py_ssize_t i = 0; i < T; i++) sum += p[i] * scaled[i * T + j];
                a[t * T + j] = top + shift[j] + log(sum) + e[t * T + j];
            }
        }
        memset(a + n * T, 0, (size_t)((W - n) * T) * sizeof(double));
        const double *last = a + (n - 1) * T;
        double top = last[0] + end[0];
        for (Py_ssize_t j = 1; j < T; j++) top = fmax(top, last[j] + end[j]);
        double sum = 0.0;
        for (Py_ssize_t j = 0; j < T; j++) sum += exp(last[j] + end[j] - top);
        log_z[b] = (float)(top + log(sum));
    }
}

static void crf_gradients(const float *emissions, const int64_t *lengths,
                          const float *transitions, const float *end, const double *alpha,
                          const float *d_log_z, float *d_emissions, float *d_start,
                          float *d_transitions, float *d_end, Py_ssize_t B, Py_ssize_t W,
                          Py_ssize_t T, double *scaled, double *shift, double *beta, double *q,
                          double *pairs) {
    for (Py_ssize_t i = 0; i < T; i++) {
        double top = transitions[i * T];
        for (Py_ssize_t j = 1; j < T; j++) top = fmax(top, transitions[i * T + j]);
        shift[i] = top;
        for (Py_ssize_t j = 0; j < T; j++) scaled[i * T + j] = exp(transitions[i * T + j] - top);
    }
    memset(d_start, 0, (size_t)T * sizeof(float));
    memset(d_end, 0, (size_t)T * sizeof(float));
    memset(d_transitions, 0, (size_t)(T * T) * sizeof(float));
    memset(pairs, 0, (size_t)(T * T) * sizeof(double));
    memset(d_emissions, 0, (size_t)(B * W * T) * sizeof(float));
    for (Py_ssize_t b = 0; b < B; b++) {
        const float *e = emissions + b * W * T;
        const double *a = alpha + b * W * T;
        const Py_ssize_t n = (Py_ssize_t)lengths[b];
        const double g = d_log_z[b];
        /* beta[t][i]: log-sum of the scores after position t of the paths through tag i there */
        for (Py_ssize_t i = 0; i < T; i++) beta[(n - 1) * T + i] = end[i];
        for (Py_ssize_t t = n - 2; t >= 0; t--) {
            const double *after = beta + (t + 1) * T;
            const float *next = e + (t + 1) * T;
            double top = after[0] + next[0];
            for (Py_ssize_t j = 1; j < T; j++) top = fmax(top, after[j] + next[j]);
            for (Py_ssize_t j = 0; j < T; j++) q[j] = exp(after[j] + next[j] - top);
            for (Py_ssize_t i = 0; i < T; i++) {
                double sum = 0.0;
                for (Py_ssize_t j = 0; j < T; j++) sum += scaled[i * T + j] * q[j];
                beta[t * T + i] = top + shift[i] + log(sum);
            }
        }
        /* log Z from the row's alpha, in double (crf_forward's is rounded to float) */
        const double *last = a + (n - 1) * T;
        double top = last[0] + end[0];
        for (Py_ssize_t j = 1; j < T; j++) top = fmax(top, last[j] + end[j]);
        double sum = 0.0;
        for (Py_ssize_t j = 0; j < T; j++) sum += exp(last[j] + end[j] - top);
        const double z = top + log(sum);
        float *d = d_emissions + b * W * T;
        for (Py_ssize_t t = 0; t < n; t++)
            for (Py_ssize_t j = 0; j < T; j++)
                d[t * T + j] = (float)(g * exp(a[t * T + j] + beta[t * T + j] - z));
        for (Py_ssize_t j = 0; j < T; j++) {
            d_start[j] += d[j];
            d_end[j] += d[(n - 1) * T + j];
        }
        for (Py_ssize_t t = 1; t < n; t++) {
            const double *before = a + (t - 1) * T;
            for (Py_ssize_t j = 0; j < T; j++) q[j] = e[t * T + j] + beta[t * T + j] - z;
            for (Py_ssize_t i = 0; i < T; i++)
                for (Py_ssize_t j = 0; j < T; j++)
                    pairs[i * T + j] += exp(before[i] + transitions[i * T + j] + q[j]);
        }
        for (Py_ssize_t i = 0; i < T * T; i++) {
            d_transitions[i] += (float)(g * pairs[i]);
            pairs[i] = 0.0;
        }
    }
}

static int crf_shapes(const Py_buffer *v, Py_ssize_t *B, Py_ssize_t *W, Py_ssize_t *T) {
    *B = v[0].shape[0], *W = v[0].shape[1], *T = v[0].shape[2];
    if (*T < 1 || !shaped(&v[1], *B, -1, -1, -1) || !shaped(&v[2], *T, -1, -1, -1)
        || !shaped(&v[3], *T, *T, -1, -1) || !shaped(&v[4], *T, -1, -1, -1)) {
        PyErr_SetString(PyExc_ValueError, "shapes: emissions [B, W, T], lengths [B], start [T], "
                        "transitions [T, T], end [T]");
        return 0;
    }
    return lengths_within(&v[1], *W);
}

static PyObject *crf_forward(PyObject *self, PyObject *args) {
    static const char *const names[7] = {"emissions", "lengths", "start", "transitions", "end",
                                         "log_z", "alpha"};
    static const int dims[7] = {3, 1, 1, 2, 1, 1, 3};
    Py_buffer v[7];
    if (take_all(args, v, 7, names, dims, "fiffffd", 2) < 0) return NULL;
    PyObject *result = NULL;
    Py_ssize_t B, W, T;
    if (!crf_shapes(v, &B, &W, &T)) goto done;
    if (!shaped(&v[5], B, -1, -1, -1) || !shaped(&v[6], B, W, T, -1)) {
        PyErr_SetString(PyExc_ValueError, "shapes: log_z [B], alpha [B, W, T]");
        goto done;
    }
    {
        double *work = PyMem_RawMalloc((size_t)(T * T + 2 * T) * sizeof(double));
        if (!work) {
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        crf_alpha(v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, v[5].buf, v[6].buf, B, W, T,
                  work, work + T * T, work + T * T + T);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(work);
        result = Py_NewRef(Py_None);
    }
done:
    for (int i = 0; i < 7; i++) PyBuffer_Release(&v[i]);
    return result;
}

static PyObject *crf_backward(PyObject *self, PyObject *args) {
    static const char *const names[11] = {"emissions", "lengths", "start", "transitions", "end",
                                          "alpha", "d_log_z", "d_emissions", "d_start",
                                          "d_transitions", "d_end"};
    static const int dims[11] = {3, 1, 1, 2, 1, 3, 1, 3, 1, 2, 1};
    Py_buffer v[11];
    if (take_all(args, v, 11, names, dims, "fifffdfffff", 4) < 0) return NULL;
    PyObject *result = NULL;
    Py_ssize_t B, W, T;
    if (!crf_shapes(v, &B, &W, &T)) goto done;
    if (!shaped(&v[5], B, W, T, -1) || !shaped(&v[6], B, -1, -1, -1) || !shaped(&v[7], B, W, T, -1)
        || !shaped(&v[8], T, -1, -1, -1) || !shaped(&v[9], T, T, -1, -1)
        || !shaped(&v[10], T, -1, -1, -1)) {
        PyErr_SetString(PyExc_ValueError, "shapes: alpha [B, W, T], d_log_z [B], d_emissions "
                        "[B, W, T], d_start [T], d_transitions [T, T], d_end [T]");
        goto done;
    }
    {
        double *work = PyMem_RawMalloc((size_t)(2 * T * T + 2 * T + W * T) * sizeof(double));
        if (!work) {
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        crf_gradients(v[0].buf, v[1].buf, v[3].buf, v[4].buf, v[5].buf, v[6].buf, v[7].buf,
                      v[8].buf, v[9].buf, v[10].buf, B, W, T, work, work + T * T,
                      work + T * T + 2 * T, work + T * T + T, work + T * T + 2 * T + W * T);
        Py_END_ALLOW_THREADS
        PyMem_RawFree(work);
        result = Py_NewRef(Py_None);
    }
done:
    for (int i = 0; i < 11; i++) PyBuffer_Release(&v[i]);
    return result;
}

/* An IEEE half's value as a float (exact: every half is a float) */
static inline float half_value(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu,
                   mantissa = h & 0x3FFu;
    if (exponent == 0) {  /* zero or subnormal: mantissa * 2^-24 */
        const float v = ldexpf((float)mantissa, -24);
        return sign ? -v : v;
    }
    const uint32_t bits = sign | (exponent == 31 ? 0x7F800000u | (mantissa << 13)
                                                 : ((exponent + 112u) << 23) | (mantissa << 13));
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* out[b] = the mean of the dequantized Q4_0 rows ids[ends[b - 1]:ends[b]] of a matrix of cols
   columns (blocks of 32 values: a half scale d, 16 bytes of nibbles, the low nibbles first;
   value (nibble - 8) * d), zeros for an empty bag. The rows are added in order to zeros in float
   and the sum divided by the count in double, as NumPy's ``mean(axis=0)`` of the dequantized
   rows does, so the means are the same bit for bit: no contraction into fused multiply-adds, and
   signed zeros kept here (0 + -0 is +0, as in NumPy's sum). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off", "signed-zeros")))
#endif
static void bag_means_q4(const uint8_t *blocks, const int64_t *ids, const int64_t *ends,
                         Py_ssize_t B, Py_ssize_t cols, float *out) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const Py_ssize_t per_row = cols / 32;
    int64_t start = 0;
    for (Py_ssize_t b = 0; b < B; b++) {
        float *mean = out + b * cols;
        memset(mean, 0, (size_t)cols * sizeof(float));
        for (int64_t i = start; i < ends[b]; i++) {
            const uint8_t *block = blocks + ids[i] * per_row * 18;
            for (Py_ssize_t k = 0; k < per_row; k++, block += 18) {
                const float d = half_value((uint16_t)(block[0] | block[1] << 8));  /* little-endian */
                float *into = mean + k * 32;
                for (int j = 0; j < 16; j++) {
                    const float low = ((float)(block[2 + j] & 0x0F) - 8.0f) * d;
                    const float high = ((float)(block[2 + j] >> 4) - 8.0f) * d;
                    into[j] += low;
                    into[j + 16] += high;
                }
            }
        }
        const double count = (double)(ends[b] - start);
        if (count > 0)
            for (Py_ssize_t c = 0; c < cols; c++) mean[c] = (float)((double)mean[c] / count);
        start = ends[b];
    }
}

static PyObject *q4_bag_means(PyObject *self, PyObject *args) {
    static const char *const names[4] = {"blocks", "ids", "ends", "out"};
    static const int dims[4] = {1, 1, 1, 2};
    Py_buffer v[4];
    if (take_all(args, v, 4, names, dims, "uiif", 1) < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t B = v[3].shape[0], cols = v[3].shape[1], N = v[1].shape[0];
    const Py_ssize_t rows = cols > 0 && cols % 32 == 0 ? v[0].shape[0] / (cols / 32 * 18) : 0;
    if (v[2].shape[0] != B || cols % 32 != 0 || rows * (cols / 32 * 18) != v[0].shape[0]) {
        PyErr_SetString(PyExc_ValueError, "shapes: blocks [rows * cols / 32 * 18] bytes, ids [N], "
                        "ends [B], out [B, cols] with cols a multiple of 32");
        goto done;
    }
    const int64_t *ids = v[1].buf, *ends = v[2].buf;
    for (Py_ssize_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= rows) {
            PyErr_Format(PyExc_ValueError, "ids[%zd] = %lld: must be in 0..%zd", i,
                         (long long)ids[i], rows - 1);
            goto done;
        }
    for (Py_ssize_t b = 0; b < B; b++)
        if (ends[b] < (b ? ends[b - 1] : 0) || ends[b] > N || (b == B - 1 && ends[b] != N)) {
            PyErr_Format(PyExc_ValueError, "ends[%zd] = %lld: ends must rise from 0 to %zd", b,
                         (long long)ends[b], N);
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS
    bag_means_q4(v[0].buf, ids, ends, B, cols, v[3].buf);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < 4; i++) PyBuffer_Release(&v[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"gru_train_forward", gru_train_forward, METH_VARARGS,
     "gru_train_forward(gates_in, lengths, w_hidden, b_hidden, out, last, saved): a BiGRU "
     "layer in training"},
    {"gru_train_backward", gru_train_backward, METH_VARARGS,
     "gru_train_backward(lengths, w_hidden, saved, d_out, d_last, d_gates_in, d_hidden): "
     "its gradients"},
    {"viterbi", viterbi, METH_VARARGS,
     "viterbi(emissions, lengths, start, transitions, end, out): best CRF paths (module doc)"},
    {"crf_forward", crf_forward, METH_VARARGS,
     "crf_forward(emissions, lengths, start, transitions, end, log_z, alpha): a CRF's log "
     "partition function (module doc)"},
    {"crf_backward", crf_backward, METH_VARARGS,
     "crf_backward(emissions, lengths, start, transitions, end, alpha, d_log_z, d_emissions, "
     "d_start, d_transitions, d_end): its gradients"},
    {"q4_bag_means", q4_bag_means, METH_VARARGS,
     "q4_bag_means(blocks, ids, ends, out): means of bags of Q4_0 rows (module doc)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "Loops in C (a BiGRU layer, a CRF's partition function and Viterbi, Q4 bag means).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
