"""The CUDA sources of the CuPy fast paths, as plain strings: importable without CuPy, so the tests
run their arithmetic in NumPy on any machine (``tests/test_fast_paths.py``), and the fake CuPy of
``tests/fake_cupy`` builds the raw kernels with the host's C++ compiler.

``ELEMENTWISE[name] = (in_params, out_params, body)`` for ``cupy.ElementwiseKernel``; each body is plain
arithmetic, one statement per ``;``, over arrays of one float type ``T`` (per-channel vectors broadcast
as (1, C, 1) against (N, C, L)).

``REDUCTION[name] = (in_params, out_params, map_expr, reduce_expr, post_map_expr, identity)`` for
``cupy.ReductionKernel``: ``map_expr`` is plain arithmetic, the reduction a sum.

``RAW[name]`` for ``cupy.RawKernel``: one thread per output element (or per row, or per four numbers
drawn), or for BatchNorm's sums one block per channel adding in a fixed tree in shared memory; no atomics, so the
result never depends on the order threads run in. The
builder puts ``typedef``s of ``T`` (the float type), ``L`` (labels) and ``I`` (pooling indices) in front.
Sizes are ``long long`` (a Python int as CuPy passes it); NaN is tested as ``v != v``, which needs no
header.
"""

from __future__ import annotations

__all__ = ["C_TYPES", "ELEMENTWISE", "REDUCTION", "RAW"]

# The C type of each dtype xpnet's kernels are built for (raw kernels' typedefs, the matmul's element type).
C_TYPES = {"bool": "bool", "int8": "signed char", "int32": "int", "int64": "long long", "float32": "float",
           "float64": "double"}

ELEMENTWISE = {
    "sgd": ("T g, T lr", "T p", "p -= lr * g;"),
    "momentum": ("T g, T lr, T momentum", "T p, T v", "v = v * momentum - lr * g; p += v;"),
    # SGD with PyTorch's momentum after its first step (which sets v = g): keep = 1 - dampening.
    "sgd_momentum": ("T g, T lr, T momentum, T keep", "T p, T v", "v = v * momentum + keep * g; p -= lr * v;"),
    "sgd_nesterov": ("T g, T lr, T momentum, T keep", "T p, T v",
                     "v = v * momentum + keep * g; p -= lr * (momentum * v + g);"),
    # RMSprop (decay alpha, scale 1 - alpha) and AdaGrad (decay and scale 1): h, then p -= lr * g / (sqrt(h) + eps).
    "rms": ("T g, T lr, T decay, T scale, T eps", "T p, T h",
            "h = h * decay + g * g * scale; p -= g / (sqrt(h) + eps) * lr;"),
    "adam": ("T g, T one_minus_b1, T b2, T one_minus_b2, T step, T eps", "T p, T m, T v",
             "m += one_minus_b1 * (g - m); v = v * b2 + one_minus_b2 * (g * g); p -= step * (m / (sqrt(v) + eps));"),
    # AdamW: the decoupled decay p *= keep (keep = 1 - lr * weight_decay), then Adam's step, in one pass.
    "adamw": ("T g, T keep, T one_minus_b1, T b2, T one_minus_b2, T step, T eps", "T p, T m, T v",
              "p = p * keep; m += one_minus_b1 * (g - m); v = v * b2 + one_minus_b2 * (g * g); "
              "p -= step * (m / (sqrt(v) + eps));"),
    # An epoch's running sums after a step (xpnet.training.epoch_sums): the loss sum plus the batch's mean times its
    # count of targets, the correct count plus the batch's (I: the index dtype), 0-d each.
    "epoch_sums": ("T loss_sum, T value, T count, I correct, I hits", "T new_sum, I new_correct",
                   "new_sum = loss_sum + value * count; new_correct = correct + hits;"),
    # dy * mask as the portable path: an inf or NaN dy where x <= 0 gives NaN (inf * 0).
    "relu_backward": ("T dy, bool mask", "T dx", "dx = dy * mask;"),
    # GELU's erf: CUDA's own (erff for float), what cupyx.scipy.special.erf runs, without importing cupyx.
    "erf": ("T x", "T y", "y = erf(x);"),
    # Both running statistics moved on in place (a captured CUDA graph replays on the same arrays);
    # w_new_var takes PyTorch's n/(n-1) in (its running_var is the unbiased variance).
    "bn_running": ("T mean, T var, T w_old, T w_new, T w_new_var", "T running_mean, T running_var",
                   "running_mean = w_old * running_mean + w_new * mean; "
                   "running_var = w_old * running_var + w_new_var * var;"),
}

REDUCTION = {
    # BatchNorm's per-channel sum of a * b over axes 0 and 2 of (N, C, L): one pass, no temporary.
    "channel_dot": ("T a, T b", "T y", "a * b", "a + b", "y = a", "0"),
    # The sum of squares of a gradient (clip_grad_norm), one pass without the temporary g * g.
    "squares": ("T g", "T y", "g * g", "a + b", "y = a", "0"),
    # How many labels are not ignore_index.
    "count_valid": ("L t, int64 ignore", "L y", "t != ignore", "a + b", "y = a", "0"),
}

_INDEX = "long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;"

# Random numbers on the device: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
# SC'11; the constants of Random123's philox.h), a pure function of a 128-bit counter and a 64-bit key.
# A draw of n numbers reads ``state = {key, draw count}`` (uint64, on the device, so a captured graph reads
# the current count rather than a baked one) and gives thread i the four words of the counter
# {i, draw count}; element 4 * i + j takes word j. A word w becomes a uniform number in [0, 1) exactly:
# (w >> 8) / 2**24 in float, w / 2**32 in double. The caller adds 1 to the draw count after each draw.
_PHILOX = r"""
__device__ inline void xpnet_philox(unsigned int* c, const unsigned long long* state, long long i) {
    unsigned long long step = state[1];
    unsigned int k0 = (unsigned int)state[0], k1 = (unsigned int)(state[0] >> 32);
    c[0] = (unsigned int)i; c[1] = (unsigned int)((unsigned long long)i >> 32);
    c[2] = (unsigned int)step; c[3] = (unsigned int)(step >> 32);
    for (int round = 0; round < 10; ++round) {
        unsigned long long p0 = (unsigned long long)0xD2511F53u * c[0], p1 = (unsigned long long)0xCD9E8D57u * c[2];
        unsigned int hi0 = (unsigned int)(p0 >> 32), hi1 = (unsigned int)(p1 >> 32);
        c[0] = hi1 ^ c[1] ^ k0; c[1] = (unsigned int)p1; c[2] = hi0 ^ c[3] ^ k1; c[3] = (unsigned int)p0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
}
__device__ inline T xpnet_uniform(unsigned int w) {
    return sizeof(T) == 4 ? (T)((float)(w >> 8) * 5.9604644775390625e-08f)
                          : (T)((double)w * 2.3283064365386962890625e-10);
}
"""

# The recurrent steps' kernels: one thread per (row r, unit j) of the (N, H) state, and the gates' sigmoid as
# the portable cells compute it, 0.5 * tanh(0.5 * a) + 0.5.
_UNIT = r"""%(index)s
    if (i >= n) return;
    long long r = i / hidden, j = i - r * hidden;"""
_SIGMOID = r"""
__device__ inline T xpnet_sigmoid(T a) {
    return (T)0.5 * tanh((T)0.5 * a) + (T)0.5;
}
"""

# The sum over a block of SUM_THREADS threads (BatchNorm's and multi_finite's blocks are of that size): each thread's
# partial sum v added in a fixed tree in shared memory, so the same sums at every run (no atomics); every thread gets
# the total, and the shared partials are free again when it returns.
_BLOCK_SUM = r"""
#define SUM_THREADS 256
__device__ inline double xpnet_block_sum(double* part, double v) {
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = SUM_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    double total = part[0];
    __syncthreads();
    return total;
}
"""

RAW = {
    # y = max(x, 0) (NaN stays NaN, as NumPy's maximum) and the mask x > 0, in one pass.
    "relu_forward": r"""
extern "C" __global__ void xpnet_relu_forward(const T* x, T* y, bool* mask, long long n) {
    %(index)s
    if (i >= n) return;
    T v = x[i];
    bool positive = v > 0;
    mask[i] = positive;
    y[i] = (positive || v != v) ? v : (T)0;
}
""",
    # Softmax cross-entropy of integer labels, one thread per row of y (M, C): the row's loss times its
    # weight in the mean, dy = (softmax - target) times that weight (the gradient for dout = 1), and
    # whether the row's first maximum (NumPy's argmax: a NaN first) is at the label. The formulas are
    # those of xpnet.losses.cross_entropy_labels and its backward; sums accumulate in double.
    "softmax_cross_entropy": r"""
extern "C" __global__ void xpnet_softmax_cross_entropy(const T* y, const L* t, const L* valid, T* loss, T* dy,
                                                       bool* hit, long long ignore, double smoothing, long long m,
                                                       long long c) {
    %(index)s
    if (i >= m) return;
    const T* row = y + i * c;
    T* grad = dy + i * c;
    long long label = (long long)t[i];
    bool counted = label != ignore;
    long long k = counted ? label : 0;
    T best = row[0];
    long long arg = 0;
    for (long long j = 1; j < c; ++j) {
        T v = row[j];
        if (v > best || (v != v && best == best)) { best = v; arg = j; }
    }
    hit[i] = label == arg;
    double total = 0, z_sum = 0;
    for (long long j = 0; j < c; ++j) {
        T z = row[j] - best;
        T e = exp(z);
        grad[j] = e;
        total += e;
        z_sum += z;
    }
    T sum_e = (T)total;
    T log_total = log(sum_e);
    long long n_valid = (long long)valid[0];
    T weight = counted ? (T)1 / (T)(n_valid > 1 ? n_valid : 1) : (T)0;
    T per_row = (row[k] - best) - log_total;
    T keep = (T)(1 - smoothing), spread = (T)(smoothing / c);
    if (smoothing != 0) per_row = per_row * keep + ((T)z_sum - (T)c * log_total) * spread;
    loss[i] = -(per_row * weight);
    for (long long j = 0; j < c; ++j) {
        T target = j == k ? (T)1 : (T)0;
        if (smoothing != 0) target = target * keep + spread;
        grad[j] = (grad[j] / sum_e - target) * weight;
    }
}
""",
    # MaxPool2d over (planes = N * C, H, W), one thread per output: the running maximum over the window's
    # offsets in row-major order as the portable path (padding reads as -inf), raised by PyTorch's
    # `v > best || isnan(v)`: the first maximum, the last NaN; the index starts at the window's first pixel
    # inside the input (what a window of -inf only keeps).
    "maxpool2d_forward": r"""
extern "C" __global__ void xpnet_maxpool2d_forward(const T* x, T* y, I* first, T neg_inf, long long planes,
                                                   long long h, long long w, long long oh, long long ow,
                                                   long long kh, long long kw, long long sh, long long sw,
                                                   long long ph, long long pw) {
    %(index)s
    if (i >= planes * oh * ow) return;
    long long q = i %% ow, p = (i / ow) %% oh;
    const T* plane = x + (i / (oh * ow)) * h * w;
    T best = neg_inf;
    long long r0 = p * sh - ph, s0 = q * sw - pw;
    long long arg = (r0 < 0 ? -r0 : 0) * kw + (s0 < 0 ? -s0 : 0), offset = 0;
    for (long long di = 0; di < kh; ++di) {
        long long r = r0 + di;
        for (long long dj = 0; dj < kw; ++dj, ++offset) {
            long long s = s0 + dj;
            T v = (r >= 0 && r < h && s >= 0 && s < w) ? plane[r * w + s] : neg_inf;
            bool raised = v > best || v != v;
            arg = raised ? offset : arg;
            best = raised ? v : best;
        }
    }
    y[i] = best;
    first[i] = (I)arg;
}
""",
    # One thread per input pixel: the sum of dy * (first == its offset) over the windows that hold it,
    # in the portable path's order (kernel offsets ascending), so no atomics and the same sums.
    "maxpool2d_backward": r"""
extern "C" __global__ void xpnet_maxpool2d_backward(const T* dy, const I* first, T* dx, long long planes,
                                                    long long h, long long w, long long oh, long long ow,
                                                    long long kh, long long kw, long long sh, long long sw,
                                                    long long ph, long long pw) {
    %(index)s
    if (i >= planes * h * w) return;
    long long plane = i / (h * w), row = (i / w) %% h + ph, col = i %% w + pw;
    long long p_lo = row - kh + 1 <= 0 ? 0 : (row - kh + sh) / sh;
    long long q_lo = col - kw + 1 <= 0 ? 0 : (col - kw + sw) / sw;
    long long p_hi = row / sh < oh ? row / sh : oh - 1, q_hi = col / sw < ow ? col / sw : ow - 1;
    T acc = 0;
    for (long long p = p_hi; p >= p_lo; --p) {
        for (long long q = q_hi; q >= q_lo; --q) {
            long long o = (plane * oh + p) * ow + q;
            long long offset = (row - p * sh) * kw + (col - q * sw);
            acc += dy[o] * (T)((long long)first[o] == offset);
        }
    }
    dx[i] = acc;
}
""",
    # One step of the Elman RNN after its product ah = h @ Wh (xpnet.layers.cells.rnn_step): h_next = tanh(ax + ah),
    # or with relu max(ax + ah, 0) (0 for NaN, as the portable where(a > 0, a, 0): rnn_relu_step), one thread per
    # (row, unit); rows of ax are ax_row numbers apart, ah and h_next (N, H) contiguous.
    "rnn_forward": r"""
extern "C" __global__ void xpnet_rnn_forward(const T* ax, const T* ah, T* h_next, long long ax_row, long long relu,
                                             long long hidden, long long n) {
    %(unit)s
    T a = ax[r * ax_row + j] + ah[i];
    h_next[i] = relu ? (a > (T)0 ? a : (T)0) : tanh(a);
}
""",
    # Its backward before da @ Wh^T: da = dh * (1 - h_next^2), with relu dh where h_next > 0 else 0; dh and h_next
    # read with their row strides. In these three backward kernels, has_carry adds carry (N, H), contiguous, to dh
    # first: the gradient the next time step carried back (the time loop's dh + dh_next, the carry argument of
    # xpnet.layers.cells' backward steps), one launch fewer a step.
    "rnn_backward": r"""
extern "C" __global__ void xpnet_rnn_backward(const T* dh, const T* carry, const T* h_next, T* da, long long dh_row,
                                              long long h_row, long long has_carry, long long relu, long long hidden,
                                              long long n) {
    %(unit)s
    T v = h_next[r * h_row + j], d = dh[r * dh_row + j];
    if (has_carry) d = d + carry[i];
    da[i] = relu ? (v > (T)0 ? d : (T)0) : d * ((T)1 - v * v);
}
""",
    # One LSTM step after its product ah = h @ Wh (xpnet.layers.cells.lstm_step), one thread per (row, unit) of
    # the (N, H) state: a = ax + ah in PyTorch's blocks i, f, g, o, the gates (sigmoid as the portable
    # 0.5 * tanh(0.5 * a) + 0.5), c_next, tanh(c_next) and h_next. Rows of ax are ax_row numbers apart (one
    # time step of the whole sequence's projection); ah, gates (N, 4H) and c and the rest (N, H) are contiguous.
    "lstm_forward": r"""%(sigmoid)s
extern "C" __global__ void xpnet_lstm_forward(const T* ax, const T* ah, const T* c, T* gates, T* c_next,
                                              T* tanh_c, T* h_next, long long ax_row, long long hidden,
                                              long long n) {
    %(unit)s
    const T* x = ax + r * ax_row + j;
    const T* a = ah + r * 4 * hidden + j;
    T* gate = gates + r * 4 * hidden + j;
    T gi = xpnet_sigmoid(x[0] + a[0]);
    T gf = xpnet_sigmoid(x[hidden] + a[hidden]);
    T gg = tanh(x[2 * hidden] + a[2 * hidden]);
    T go = xpnet_sigmoid(x[3 * hidden] + a[3 * hidden]);
    gate[0] = gi;
    gate[hidden] = gf;
    gate[2 * hidden] = gg;
    gate[3 * hidden] = go;
    T cn = gf * c[i] + gi * gg;
    T tc = tanh(cn);
    c_next[i] = cn;
    tanh_c[i] = tc;
    h_next[i] = go * tc;
}
""",
    # Its backward (xpnet.layers.cells.lstm_step_backward) before the product da @ Wh^T, one thread per
    # (row, unit): da (N, 4H) in the blocks i, f, g, o and dc_prev = ds * f, the portable path's products in
    # its order. dh, c and the gates are read with their own row strides (a time step's slice of dhs, the
    # views of one gates array or the portable path's separate ones); dc (when has_dc) and tanh_c are contiguous.
    "lstm_backward": r"""
extern "C" __global__ void xpnet_lstm_backward(const T* dh, const T* carry, const T* dc, const T* c, const T* gi,
                                               const T* gf, const T* gg, const T* go, const T* tanh_c, T* da,
                                               T* dc_prev, long long dh_row, long long c_row, long long i_row,
                                               long long f_row, long long g_row, long long o_row,
                                               long long has_carry, long long has_dc, long long hidden,
                                               long long n) {
    %(unit)s
    T one = (T)1;
    T d = dh[r * dh_row + j], vi = gi[r * i_row + j], vf = gf[r * f_row + j], vg = gg[r * g_row + j];
    if (has_carry) d = d + carry[i];
    T vo = go[r * o_row + j], tc = tanh_c[i];
    T ds = d * vo * (one - tc * tc);
    if (has_dc) ds = ds + dc[i];
    T* out = da + r * 4 * hidden + j;
    out[0] = ds * vg * vi * (one - vi);
    out[hidden] = ds * c[r * c_row + j] * vf * (one - vf);
    out[2 * hidden] = ds * vi * (one - vg * vg);
    out[3 * hidden] = d * tc * vo * (one - vo);
    dc_prev[i] = ds * vf;
}
""",
    # One step of PyTorch's GRU after its product ah = h @ Wh (xpnet.layers.cells.gru_step), one thread per
    # (row, unit): blocks r, z, n; ah + bh as the portable path adds them (has_bh 0: no hidden bias), then the
    # gates (sigmoid as 0.5 * tanh(0.5 * a) + 0.5), n = tanh(ax_n + r * (ah_n + bh_n)) and h_next = n + z * (h - n).
    # Writes gates (N, 3H) = r, z, n, ah_n + bh_n (N, H) and h_next; rows of ax are ax_row numbers apart.
    "gru_forward": r"""%(sigmoid)s
extern "C" __global__ void xpnet_gru_forward(const T* ax, const T* ah, const T* bh, const T* h, T* gates, T* hidden_n,
                                             T* h_next, long long ax_row, long long has_bh, long long hidden,
                                             long long n) {
    %(unit)s
    const T* x = ax + r * ax_row + j;
    const T* a = ah + r * 3 * hidden + j;
    T* gate = gates + r * 3 * hidden + j;
    T a_r = a[0], a_z = a[hidden], a_n = a[2 * hidden];
    if (has_bh) {
        a_r = a_r + bh[j];
        a_z = a_z + bh[hidden + j];
        a_n = a_n + bh[2 * hidden + j];
    }
    T gr = xpnet_sigmoid(x[0] + a_r);
    T gz = xpnet_sigmoid(x[hidden] + a_z);
    T gn = tanh(x[2 * hidden] + gr * a_n);
    gate[0] = gr;
    gate[hidden] = gz;
    gate[2 * hidden] = gn;
    hidden_n[i] = a_n;
    h_next[i] = gn + gz * (h[i] - gn);
}
""",
    # Its backward (xpnet.layers.cells.gru_step_backward) before the product dah @ Wh^T, one thread per
    # (row, unit): dax = (dr, dz, dn), dah = (dr, dz, dn * r) (N, 3H) and dh * z, the portable path's products
    # in its order. Every input is read with its own row stride (a time step's slice of dhs, the views of one
    # gates array or the portable path's separate ones).
    "gru_backward": r"""
extern "C" __global__ void xpnet_gru_backward(const T* dh, const T* carry, const T* h, const T* gr, const T* gz,
                                              const T* gn, const T* hidden_n, T* dax, T* dah, T* dh_z,
                                              long long dh_row, long long h_row, long long r_row, long long z_row,
                                              long long n_row, long long a_row, long long has_carry,
                                              long long hidden, long long n) {
    %(unit)s
    T one = (T)1;
    T d = dh[r * dh_row + j], vh = h[r * h_row + j], vr = gr[r * r_row + j], vz = gz[r * z_row + j];
    if (has_carry) d = d + carry[i];
    T vn = gn[r * n_row + j], va = hidden_n[r * a_row + j];
    T d_n = d * (one - vz) * (one - vn * vn);
    T d_z = d * (vh - vn) * vz * (one - vz);
    T d_r = d_n * va * vr * (one - vr);
    T* x = dax + r * 3 * hidden + j;
    T* a = dah + r * 3 * hidden + j;
    x[0] = d_r;
    x[hidden] = d_z;
    x[2 * hidden] = d_n;
    a[0] = d_r;
    a[hidden] = d_z;
    a[2 * hidden] = d_n * vr;
    dh_z[i] = d * vz;
}
""",
    # The book's GRU (xpnet.layers.cells.gru_book_step), blocks z, r, h~, one thread per (row, unit): after the
    # product a = h @ Wh[:, :2H], z and r (sigmoid as the portable cells) into zr (N, 2H) and r * h into rh (N, H);
    # rows of ax are ax_row numbers apart.
    "gru_book_gates": r"""%(sigmoid)s
extern "C" __global__ void xpnet_gru_book_gates(const T* ax, const T* a, const T* h, T* zr, T* rh, long long ax_row,
                                                long long hidden, long long n) {
    %(unit)s
    const T* x = ax + r * ax_row + j;
    const T* p = a + r * 2 * hidden + j;
    T gz = xpnet_sigmoid(x[0] + p[0]);
    T gr = xpnet_sigmoid(x[hidden] + p[hidden]);
    zr[r * 2 * hidden + j] = gz;
    zr[r * 2 * hidden + hidden + j] = gr;
    rh[i] = gr * h[i];
}
""",
    # Then, after the product a_h = rh @ Wh[:, 2H:], h~ = tanh(ax_h + a_h) and h_next = h + z * (h~ - h).
    "gru_book_forward": r"""
extern "C" __global__ void xpnet_gru_book_forward(const T* ax, const T* a_h, const T* h, const T* zr, T* hh,
                                                  T* h_next, long long ax_row, long long hidden, long long n) {
    %(unit)s
    T t = tanh(ax[r * ax_row + 2 * hidden + j] + a_h[i]);
    hh[i] = t;
    h_next[i] = h[i] + zr[r * 2 * hidden + j] * (t - h[i]);
}
""",
    # Its backward (xpnet.layers.cells.gru_book_step_backward), in the portable path's order, one thread per (row,
    # unit), d = dh (+ carry where has_carry, the gradient the next step carried back): first dax's z block
    # d * (h~ - h) * z * (1 - z) and its h~ block dt = d * z * (1 - h~^2) into dax (N, 3H); z, r, h and h~ read
    # with their row strides (the views of the forward's zr, or the portable path's arrays).
    "gru_book_backward_t": r"""
extern "C" __global__ void xpnet_gru_book_backward_t(const T* dh, const T* carry, const T* h, const T* z, const T* hh,
                                                     T* dax, long long dh_row, long long h_row, long long z_row,
                                                     long long hh_row, long long has_carry, long long hidden,
                                                     long long n) {
    %(unit)s
    T one = (T)1;
    T d = dh[r * dh_row + j], vh = h[r * h_row + j], vz = z[r * z_row + j], vt = hh[r * hh_row + j];
    if (has_carry) d = d + carry[i];
    T* out = dax + r * 3 * hidden + j;
    out[0] = d * (vt - vh) * vz * (one - vz);
    out[2 * hidden] = d * vz * (one - vt * vt);
}
""",
    # Then, after drh = dt @ Wh[:, 2H:]^T: dax's r block drh * h * r * (1 - r) and part = d * (1 - z) + r * drh,
    # to which dh_prev adds dzr @ Wh[:, :2H]^T.
    "gru_book_backward_r": r"""
extern "C" __global__ void xpnet_gru_book_backward_r(const T* dh, const T* carry, const T* h, const T* z, const T* rr,
                                                     const T* drh, T* dax, T* part, long long dh_row, long long h_row,
                                                     long long z_row, long long r_row, long long has_carry,
                                                     long long hidden, long long n) {
    %(unit)s
    T one = (T)1;
    T d = dh[r * dh_row + j], vh = h[r * h_row + j], vz = z[r * z_row + j], vr = rr[r * r_row + j], g = drh[i];
    if (has_carry) d = d + carry[i];
    dax[r * 3 * hidden + hidden + j] = g * vh * vr * (one - vr);
    part[i] = d * (one - vz) + vr * g;
}
""",
    # The draw state {key, 0}: the key comes as a kernel argument, so seeding copies nothing from host memory
    # (a copy from pageable memory may wait for the work queued before it).
    "philox_seed": r"""
extern "C" __global__ void xpnet_philox_seed(unsigned long long* state, long long key) {
    %(index)s
    if (i != 0) return;
    state[0] = (unsigned long long)key;
    state[1] = 0;
}
""",
    # n uniform numbers in [0, 1): one thread per four (see _PHILOX above).
    "philox_uniform": r"""%(philox)s
extern "C" __global__ void xpnet_philox_uniform(T* out, const unsigned long long* state, long long n) {
    %(index)s
    if (4 * i >= n) return;
    unsigned int words[4];
    xpnet_philox(words, state, i);
    for (long long j = 0; j < 4 && 4 * i + j < n; ++j) out[4 * i + j] = xpnet_uniform(words[j]);
}
""",
    # Dropout's training forward: u drawn as philox_uniform, scale = (u >= p) * kept, y = x * scale (the
    # portable path's (uniform >= p), astype, * kept and x * scale, with p and kept cast to T as there).
    "dropout_forward": r"""%(philox)s
extern "C" __global__ void xpnet_dropout_forward(const T* x, T* y, T* scale, const unsigned long long* state,
                                                 double p, double kept, long long n) {
    %(index)s
    if (4 * i >= n) return;
    unsigned int words[4];
    xpnet_philox(words, state, i);
    T threshold = (T)p, factor = (T)kept;
    for (long long j = 0; j < 4 && 4 * i + j < n; ++j) {
        long long e = 4 * i + j;
        T s = xpnet_uniform(words[j]) >= threshold ? factor : (T)0;
        scale[e] = s;
        y[e] = x[e] * s;
    }
}
""",
    # The two draws above as one block that also moves the draw count on (one launch a draw, where the two above and
    # the count's own add are two): every thread reads the state first, then thread 0 writes count + 1; a thread
    # takes i, i + blockDim.x, ..., the numbers of thread i above, so the same numbers for the same state.
    "philox_uniform_counted": r"""%(philox)s
extern "C" __global__ void xpnet_philox_uniform_counted(T* out, unsigned long long* state, long long n) {
    unsigned long long drawn[2] = {state[0], state[1]};
    __syncthreads();
    if (threadIdx.x == 0) state[1] = drawn[1] + 1;
    for (long long i = threadIdx.x; 4 * i < n; i += blockDim.x) {
        unsigned int words[4];
        xpnet_philox(words, drawn, i);
        for (long long j = 0; j < 4 && 4 * i + j < n; ++j) out[4 * i + j] = xpnet_uniform(words[j]);
    }
}
""",
    "dropout_forward_counted": r"""%(philox)s
extern "C" __global__ void xpnet_dropout_forward_counted(const T* x, T* y, T* scale, unsigned long long* state,
                                                         double p, double kept, long long n) {
    unsigned long long drawn[2] = {state[0], state[1]};
    __syncthreads();
    if (threadIdx.x == 0) state[1] = drawn[1] + 1;
    T threshold = (T)p, factor = (T)kept;
    for (long long i = threadIdx.x; 4 * i < n; i += blockDim.x) {
        unsigned int words[4];
        xpnet_philox(words, drawn, i);
        for (long long j = 0; j < 4 && 4 * i + j < n; ++j) {
            long long e = 4 * i + j;
            T s = xpnet_uniform(words[j]) >= threshold ? factor : (T)0;
            scale[e] = s;
            y[e] = x[e] * s;
        }
    }
}
""",
    # im2col (xpnet.backend.fast_numpy.im2col_strided) of a C-contiguous x (N, C, H, W): col (C*kh*kw, N*oh*ow), or
    # per_sample (N, C*kh*kw, oh*ow), one thread per element copying its x, 0 where the window is on the padding.
    "im2col": r"""
extern "C" __global__ void xpnet_im2col(const T* x, T* col, long long n, long long c, long long h, long long w,
                                        long long kh, long long kw, long long sh, long long sw, long long ph,
                                        long long pw, long long dh, long long dw, long long oh, long long ow,
                                        long long per_sample, long long total) {
    %(index)s
    if (i >= total) return;
    long long ox = i %% ow, oy = (i / ow) %% oh, rest = i / (ow * oh), s, ch, ki, kj;
    if (per_sample) {
        kj = rest %% kw; ki = (rest / kw) %% kh; ch = (rest / (kw * kh)) %% c; s = rest / (kw * kh * c);
    } else {
        s = rest %% n; kj = (rest / n) %% kw; ki = (rest / (n * kw)) %% kh; ch = rest / (n * kw * kh);
    }
    long long y = oy * sh + ki * dh - ph, xx = ox * sw + kj * dw - pw;
    col[i] = (y >= 0 && y < h && xx >= 0 && xx < w) ? x[((s * c + ch) * h + y) * w + xx] : (T)0;
}
""",
    # GlobalAvgPool's dx (xpnet.layers.pool.global_avg_pool_backward), a thread per pixel: dy / (H * W) as the portable
    # dy * (T)share then + 0 (which makes a -0 share +0, as there).
    "spread_mean": r"""
extern "C" __global__ void xpnet_spread_mean(const T* dy, T* dx, double share, long long plane, long long total) {
    %(index)s
    if (i >= total) return;
    dx[i] = dy[i / plane] * (T)share + (T)0;
}
""",
    # The flat dy of Conv2d's stride-1 input gradient (xpnet.layers._im2col.flat_dy_portable) from a C-contiguous dy
    # (N, F, oh, ow): flat (F, N * rows * wp), a thread per element, dy's value where (row, column) lies within
    # (oh, ow), else 0 (the portable zeros and the copy into them, in one pass).
    "flat_dy": r"""
extern "C" __global__ void xpnet_flat_dy(const T* dy, T* flat, long long n, long long f, long long oh, long long ow,
                                         long long rows, long long wp, long long total) {
    %(index)s
    if (i >= total) return;
    long long col = i %% wp, r = (i / wp) %% rows, s = (i / (wp * rows)) %% n, ch = i / (wp * rows * n);
    flat[i] = (r < oh && col < ow) ? dy[((s * f + ch) * oh + r) * ow + col] : (T)0;
}
""",
    # Conv2d's stride-1 input gradient (xpnet.layers._im2col.shifted_sums_portable): dx (N, C, H, W), C-contiguous, one
    # thread per element adding, kernel offset by offset in row-major order from 0, what each offset's rows of dcol
    # (C, kh*kw, N*rows*wp) send to its place in the flat padded image: the portable adds' sums in their order.
    "shifted_sums": r"""
extern "C" __global__ void xpnet_shifted_sums(const T* dcol, T* dx, long long n, long long c, long long h, long long w,
                                              long long kh, long long kw, long long ph, long long pw, long long dh,
                                              long long dw, long long rows, long long wp, long long total) {
    %(index)s
    if (i >= total) return;
    long long x = i %% w, y = (i / w) %% h, ch = (i / (w * h)) %% c, s = i / (w * h * c);
    long long length = n * rows * wp, pos = s * rows * wp + (y + ph) * wp + (x + pw);
    const T* base = dcol + ch * kh * kw * length;
    T sum = 0;
    for (long long k = 0; k < kh * kw; ++k) {
        long long q = pos - (dh * (k / kw) * wp + dw * (k %% kw));
        if (q >= 0 && q < length) sum += base[k * length + q];
    }
    dx[i] = sum;
}
""",
    # col2im (xpnet.layers._im2col.col2im_portable): col (C*kh*kw, N*oh*ow), or per_sample (N, C*kh*kw, oh*ow), ->
    # dx (N, C, H, W), C-contiguous, one thread per element adding the windows that cover it, kernel offset by offset
    # from 0.
    "col2im": r"""
extern "C" __global__ void xpnet_col2im(const T* col, T* dx, long long n, long long c, long long h, long long w,
                                        long long kh, long long kw, long long sh, long long sw, long long ph,
                                        long long pw, long long dh, long long dw, long long oh, long long ow,
                                        long long per_sample, long long total) {
    %(index)s
    if (i >= total) return;
    long long x = i %% w, y = (i / w) %% h, ch = (i / (w * h)) %% c, s = i / (w * h * c);
    T sum = 0;
    for (long long k = 0; k < kh * kw; ++k) {
        long long ry = y + ph - dh * (k / kw), rx = x + pw - dw * (k %% kw);
        if (ry < 0 || rx < 0 || ry %% sh != 0 || rx %% sw != 0 || ry / sh >= oh || rx / sw >= ow) continue;
        long long block = per_sample ? (s * c + ch) * kh * kw + k : (ch * kh * kw + k) * n + s;
        sum += col[block * oh * ow + (ry / sh) * ow + rx / sw];
    }
    dx[i] = sum;
}
""",
    # Softmax along the last axis of (rows, C), one thread per row, as xpnet.layers.softmax's portable path: the
    # row's maximum (NaN if any is NaN), exp(x - max) (shifted by 0 where the maximum is -inf), their sum
    # (in double), each divided by it; a sum of 0 (every x -inf) or NaN gives NaN, as there.
    "softmax": r"""
extern "C" __global__ void xpnet_softmax(const T* x, T* y, long long rows, long long c) {
    %(index)s
    if (i >= rows) return;
    const T* row = x + i * c;
    T* out = y + i * c;
    T best = row[0];
    for (long long j = 1; j < c; ++j) {
        T v = row[j];
        if (v > best || v != v) best = v;
    }
    T shift = (best < (T)0 && best - best != best - best) ? (T)0 : best;
    double total = 0;
    for (long long j = 0; j < c; ++j) {
        T e = exp(row[j] - shift);
        out[j] = e;
        total += (double)e;
    }
    T z = (T)total;
    T denom = z > (T)0 ? z : (z != z ? z : z / z);
    for (long long j = 0; j < c; ++j) out[j] = out[j] / denom;
}
""",
    # Its backward from y and dy (rows, C): dx = y * (dy - sum(dy * y)), the row's sum in double.
    "softmax_backward": r"""
extern "C" __global__ void xpnet_softmax_backward(const T* y, const T* dy, T* dx, long long rows, long long c) {
    %(index)s
    if (i >= rows) return;
    const T* yr = y + i * c;
    const T* dr = dy + i * c;
    double total = 0;
    for (long long j = 0; j < c; ++j) total += (double)(dr[j] * yr[j]);
    T s = (T)total;
    for (long long j = 0; j < c; ++j) dx[i * c + j] = yr[j] * (dr[j] - s);
}
""",
    # Embedding's backward as a segment sum by id, without atomics: the ids sorted, stable (equal ids keep the order of
    # their positions), then each row of dW summed over its id's run in that order, the same order every run. The sort
    # is two kernels, whose work grows as M^1.5, not M^2: first a thread per position m ranks its id inside its chunk of
    # ``chunk`` positions (the ids smaller, and the equal ones before it) and writes the id and m to that place.
    "sort_chunks": r"""
extern "C" __global__ void xpnet_sort_chunks(const L* ids, L* keys, long long* order, long long m, long long chunk) {
    %(index)s
    if (i >= m) return;
    long long lo = i - i %% chunk, hi = lo + chunk < m ? lo + chunk : m;
    L v = ids[i];
    long long rank = lo;
    for (long long k = lo; k < hi; ++k) rank += ids[k] < v || (ids[k] == v && k < i);
    keys[rank] = v;
    order[rank] = i;
}
""",
    # Then a thread per place s of the sorted chunks finds its place in the whole order: its rank in its chunk plus,
    # by binary search, the ids of each earlier chunk not above it and of each later chunk below it (positions in
    # earlier chunks come first, so equal ids stay in the order of their positions). One chunk: not launched.
    "merge_chunks": r"""
extern "C" __global__ void xpnet_merge_chunks(const L* keys, const long long* order, L* sorted, long long* sorted_order,
                                              long long m, long long chunk) {
    %(index)s
    if (i >= m) return;
    long long own = i / chunk;
    L v = keys[i];
    long long place = i - own * chunk;
    for (long long lo0 = 0; lo0 < m; lo0 += chunk) {
        if (lo0 == own * chunk) continue;
        long long lo = lo0, hi = lo0 + chunk < m ? lo0 + chunk : m;
        bool before = lo0 < own * chunk;
        while (lo < hi) {
            long long mid = lo + (hi - lo) / 2;
            if (keys[mid] < v || (before && keys[mid] == v)) lo = mid + 1; else hi = mid;
        }
        place += lo - lo0;
    }
    sorted[place] = v;
    sorted_order[place] = order[i];
}
""",
    # Last, a thread per element (v, j) of dW (V, D) finds the run of id v in the sorted ids by binary search and adds
    # column j of dy's rows (M, D) at its positions, in their order; 0 where v has none. Every element is written, so
    # dW needs no zeros first; an id outside [0, V) is never looked for, and adds nowhere, as the portable products.
    "segment_rows": r"""
extern "C" __global__ void xpnet_segment_rows(const L* sorted, const long long* order, const T* dy, T* dw, long long m,
                                              long long d, long long vocab) {
    %(index)s
    if (i >= vocab * d) return;
    long long v = i / d, j = i - v * d, lo = 0, hi = m;
    while (lo < hi) {
        long long mid = lo + (hi - lo) / 2;
        if ((long long)sorted[mid] < v) lo = mid + 1; else hi = mid;
    }
    T s = (T)0;
    for (long long k = lo; k < m && (long long)sorted[k] == v; ++k) s += dy[order[k] * d + j];
    dw[i] = s;
}
""",
    # LayerNorm over the rows of x (rows, D), one thread per row, as xpnet.layers.layernorm's portable path: the mean,
    # then the mean of the squares about it (each sum in double, the means in T), inv_std = 1 / sqrt(var + eps),
    # x_hat = (x - mean) * inv_std and y = x_hat * gamma + beta (has_gamma 0: y = x_hat; has_beta 0: no beta).
    "layernorm_forward": r"""
extern "C" __global__ void xpnet_layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, T* x_hat,
                                                   T* inv_std, double eps, long long has_gamma, long long has_beta,
                                                   long long rows, long long d) {
    %(index)s
    if (i >= rows) return;
    const T* row = x + i * d;
    double total = 0;
    for (long long j = 0; j < d; ++j) total += (double)row[j];
    T mean = (T)(total / (double)d);
    double squares = 0;
    for (long long j = 0; j < d; ++j) {
        T c = row[j] - mean;
        squares += (double)(c * c);
    }
    T r = (T)1 / sqrt((T)(squares / (double)d) + (T)eps);
    inv_std[i] = r;
    for (long long j = 0; j < d; ++j) {
        T h = (row[j] - mean) * r;
        x_hat[i * d + j] = h;
        if (has_gamma) {
            h = h * gamma[j];
            if (has_beta) h = h + beta[j];
        }
        y[i * d + j] = h;
    }
}
""",
    # Its dx, one thread per row: g = dy * gamma (dy where has_gamma is 0), dx = (g - mean(g) - x_hat *
    # mean(g * x_hat)) * inv_std, the row's sums in double (dgamma and dbeta are column reductions of their own).
    "layernorm_backward": r"""
extern "C" __global__ void xpnet_layernorm_backward(const T* dy, const T* x_hat, const T* inv_std, const T* gamma,
                                                    T* dx, long long has_gamma, long long rows, long long d) {
    %(index)s
    if (i >= rows) return;
    double sum_g = 0, sum_gx = 0;
    for (long long j = 0; j < d; ++j) {
        long long k = i * d + j;
        T g = has_gamma ? dy[k] * gamma[j] : dy[k];
        sum_g += (double)g;
        sum_gx += (double)(g * x_hat[k]);
    }
    T mean_g = (T)(sum_g / (double)d), mean_gx = (T)(sum_gx / (double)d), r = inv_std[i];
    for (long long j = 0; j < d; ++j) {
        long long k = i * d + j;
        T g = has_gamma ? dy[k] * gamma[j] : dy[k];
        dx[k] = (g - mean_g - x_hat[k] * mean_gx) * r;
    }
}
""",
    # An epoch's running sums after a step where ELEMENTWISE["epoch_sums"] does not fit: the batch's count of targets
    # on the device (has_count: count (1,) of the labels' index type L, cast to T as the portable astype), or the int
    # fixed; the correct count added only where hits came (has_hits). One thread.
    # BatchNorm over x (N, C, L) C-contiguous, as xpnet.layers.norm's portable path. Training statistics: one block of
    # SUM_THREADS threads per channel (blockIdx.x), each thread summing in double the values j, j + SUM_THREADS, ... of
    # the channel's N * L, the block's partial sums then added in a fixed tree (the same sums at every run, no atomics):
    # the mean (in T), then the squares about it; thread 0 writes mean and the biased var, and with running moves the
    # running statistics on in place, as ELEMENTWISE["bn_running"] (the weights doubles cast to T, or with
    # device_weights read from 0-d arrays of T: momentum=None's 1/n).
    "bn_stats": r"""%(block_sum)s
extern "C" __global__ void xpnet_bn_stats(const T* x, T* mean, T* var, T* running_mean, T* running_var,
                                          long long running, const T* w_old_p, const T* w_new_p,
                                          const T* w_new_var_p, long long device_weights, double w_old,
                                          double w_new, double w_new_var, long long n, long long c, long long l) {
    __shared__ double part[SUM_THREADS];
    long long ch = blockIdx.x, count = n * l;
    double s = 0;
    for (long long j = threadIdx.x; j < count; j += SUM_THREADS) s += (double)x[((j / l) * c + ch) * l + j %% l];
    T m = (T)(xpnet_block_sum(part, s) / (double)count);
    double q = 0;
    for (long long j = threadIdx.x; j < count; j += SUM_THREADS) {
        T d = x[((j / l) * c + ch) * l + j %% l] - m;
        q += (double)(d * d);
    }
    T v = (T)(xpnet_block_sum(part, q) / (double)count);
    if (threadIdx.x != 0) return;
    mean[ch] = m;
    var[ch] = v;
    if (!running) return;
    T o = device_weights ? w_old_p[0] : (T)w_old, w = device_weights ? w_new_p[0] : (T)w_new;
    T wv = device_weights ? w_new_var_p[0] : (T)w_new_var;
    running_mean[ch] = o * running_mean[ch] + w * m;
    running_var[ch] = o * running_var[ch] + wv * v;
}
""",
    # Then y = (x - mean) * scale + beta, scale = gamma * inv_std, inv_std = 1 / sqrt(var + eps), a thread per element
    # of y (total of them) recomputing its channel's inv_std; threads i < c write inv_std[i] (threads = max(total, c),
    # so that an empty batch in evaluation still has them).
    "bn_normalize": r"""
extern "C" __global__ void xpnet_bn_normalize(const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                                              T* y, T* inv_std, double eps, long long c, long long l,
                                              long long total) {
    %(index)s
    if (i < c) inv_std[i] = (T)1 / sqrt(var[i] + (T)eps);
    if (i >= total) return;
    long long ch = (i / l) %% c;
    T r = (T)1 / sqrt(var[ch] + (T)eps);
    y[i] = (x[i] - mean[ch]) * (gamma[ch] * r) + beta[ch];
}
""",
    # Backward's sums, one block per channel as bn_stats: dbeta = sum(dy) and sum(dy * (x - shift)) (x itself where
    # has_shift is 0: x - mean kept by the portable forward), in double; thread 0 writes dbeta, dgamma = that sum *
    # inv_std, and the factors of dx (factors (2, C)): a = -scale * inv_std * dgamma / count, c0 = scale * dbeta /
    # count, scale = gamma * inv_std (the portable backward's per-channel arithmetic, in T).
    "bn_backward_sums": r"""%(block_sum)s
extern "C" __global__ void xpnet_bn_backward_sums(const T* dy, const T* x, const T* shift, long long has_shift,
                                                  const T* gamma, const T* inv_std, T* dgamma, T* dbeta, T* factors,
                                                  long long n, long long c, long long l) {
    __shared__ double part[SUM_THREADS];
    long long ch = blockIdx.x, count = n * l;
    T centre = has_shift ? shift[ch] : (T)0;
    double s = 0, sx = 0;
    for (long long j = threadIdx.x; j < count; j += SUM_THREADS) {
        long long k = ((j / l) * c + ch) * l + j %% l;
        s += (double)dy[k];
        sx += (double)(dy[k] * (x[k] - centre));
    }
    T db = (T)xpnet_block_sum(part, s), sum_dyx = (T)xpnet_block_sum(part, sx);
    if (threadIdx.x != 0) return;
    T r = inv_std[ch], scale = gamma[ch] * r, dg = sum_dyx * r;
    dbeta[ch] = db;
    dgamma[ch] = dg;
    factors[ch] = -scale * r * dg / (T)count;
    factors[c + ch] = scale * db / (T)count;
}
""",
    # dx, a thread per element: in training (x - shift) * a + dy * scale - c0 with bn_backward_sums' factors (a, c0);
    # in evaluation dy * scale (the running statistics are constants).
    "bn_input_grad": r"""
extern "C" __global__ void xpnet_bn_input_grad(const T* dy, const T* x, const T* shift, long long has_shift,
                                               const T* gamma, const T* inv_std, const T* factors, long long train,
                                               T* dx, long long c, long long l, long long total) {
    %(index)s
    if (i >= total) return;
    long long ch = (i / l) %% c;
    T scale = gamma[ch] * inv_std[ch];
    if (!train) {
        dx[i] = dy[i] * scale;
        return;
    }
    T centred = has_shift ? x[i] - shift[ch] : x[i];
    dx[i] = centred * factors[ch] + dy[i] * scale - factors[c + ch];
}
""",
    # RandomShiftFlip (xpnet.datasets.augment.shift_flip_portable) of a C-contiguous x (N, ..., H, W), a thread per
    # element: out[s, ..., i, j] = x[s, ..., i - dy, j - dx] read from the flipped image (column w - 1 - (j - dx)) where
    # the sample's flag is set, 0 where (i - dy, j - dx) falls outside; draws (3, N) int64: flag, dy, dx per sample.
    # A copy of each value: the same bits as the portable flip, shifts and zeros.
    "shift_flip": r"""
extern "C" __global__ void xpnet_shift_flip(const T* x, const long long* draws, T* out, long long n, long long h,
                                            long long w, long long total) {
    %(index)s
    if (i >= total) return;
    long long plane = i / (h * w), s = plane / ((total / (h * w)) / n);
    long long r = (i / w) %% h - draws[n + s], col = i %% w - draws[2 * n + s];
    if (r < 0 || r >= h || col < 0 || col >= w) {
        out[i] = (T)0;
        return;
    }
    out[i] = x[(plane * h + r) * w + (draws[s] ? w - 1 - col : col)];
}
""",
    "epoch_add": r"""
extern "C" __global__ void xpnet_epoch_add(const T* loss_sum, const T* value, const L* count, long long fixed,
                                           long long has_count, const L* correct, const L* hits, long long has_hits,
                                           T* new_sum, L* new_correct) {
    %(index)s
    if (i != 0) return;
    T c = has_count ? (T)count[0] : (T)fixed;
    new_sum[0] = loss_sum[0] + value[0] * c;
    if (has_hits) new_correct[0] = correct[0] + hits[0];
}
""",
    # clip_grad_norm after the sums of squares of its gradients (P,): their total added in order (as the
    # portable loop does), the norm and the factor min(max_norm / (norm + 1e-6), 1), NaN where the norm is
    # (NumPy's minimum); one thread.
    "clip_norm_factor": r"""
extern "C" __global__ void xpnet_clip_norm_factor(const T* squares, T* norm, T* factor, double max_norm,
                                                  long long count) {
    %(index)s
    if (i >= 1) return;
    T total = squares[0];
    for (long long k = 1; k < count; ++k) total += squares[k];
    T n = sqrt(total);
    T f = (T)max_norm / (n + (T)1e-6);
    norm[0] = n;
    factor[0] = (f < (T)1 || f != f) ? f : (T)1;
}
""",
    # clip_grad_value: g within [-c, c], NaN kept (every comparison false), as NumPy's maximum then minimum.
    "clamp": r"""
extern "C" __global__ void xpnet_clamp(const T* g, T* y, double c, long long n) {
    %(index)s
    if (i >= n) return;
    T v = g[i], top = (T)c;
    y[i] = v < -top ? -top : (v > top ? top : v);
}
""",
}

# Multi-tensor kernels: one launch for up to MULTI arrays (a step's gradients, an optimizer's parameters), each
# array's address and size a kernel argument of its own (no table copied from the host, so a captured graph replays
# them), unused slots given size 0. A thread finds its array by the ends of the arrays before it.
MULTI = 32


def _slots(*decls: str) -> str:
    """The parameters ``decl0, ..., decl{MULTI-1}`` for each ``decl`` ("const T* g")."""
    return ", ".join(f"{decl}{k}" for decl in decls for k in range(MULTI))


def _table(kind: str, name: str) -> str:
    """A local array ``name``s of the slots ``name0...``, so that a thread indexes them."""
    return f"{kind} {name}s[{MULTI}] = {{{', '.join(f'{name}{k}' for k in range(MULTI))}}};"


_FIND = r"""long long k = 0, start = 0;
    while (i >= start + ns[k]) { start += ns[k]; ++k; }
    long long e = i - start;"""

def _multi_sgd(name: str, lr_decl: str, lr_read: str) -> str:
    """The source of the kernel ``name`` (multi_sgd), its learning rate declared ``lr_decl`` and read as ``lr_read``."""
    return r"""
extern "C" __global__ void xpnet_NAME(%(p)s, %(g)s, %(v)s, %(n)s, %(wd)s, LR_DECL, double momentum, double keep,
                                 long long has_v, long long nesterov, long long total) {
    %%(index)s
    if (i >= total) return;
    %(ps)s
    %(gs)s
    %(vs)s
    %(ns)s
    %(wds)s
    %(find)s
    T g = gs[k][e], rate = LR_READ;
    if (wds[k] != 0) g = g + (T)wds[k] * ps[k][e];
    if (!has_v) {
        ps[k][e] -= rate * g;
        return;
    }
    T m = (T)momentum, v = vs[k][e] * m + (T)keep * g;
    vs[k][e] = v;
    ps[k][e] -= nesterov ? rate * (m * v + g) : rate * v;
}
""".replace("NAME", name).replace("LR_DECL", lr_decl).replace("LR_READ", lr_read) % {
        "p": _slots("T* p"), "g": _slots("const T* g"), "v": _slots("T* v"), "n": _slots("long long n"),
        "wd": _slots("double wd"), "find": _FIND, "ps": _table("T*", "p"), "gs": _table("const T*", "g"),
        "vs": _table("T*", "v"), "ns": _table("long long", "n"), "wds": _table("double", "wd")}


def _multi_adam(name: str, scalar: str, read: str) -> str:
    """The source of the kernel ``name`` (multi_adam), its per-parameter keep, step and eps declared ``scalar`` (a C
    type) and read as ``read`` (formatted with ``slot``)."""
    return r"""
extern "C" __global__ void xpnet_NAME(%(p)s, %(g)s, %(m)s, %(v)s, %(vmax)s, %(n)s, %(keep)s, %(step)s, %(eps)s,
                                %(wd)s, double one_minus_b1, double b2, double one_minus_b2, long long amsgrad,
                                long long total) {
    %%(index)s
    if (i >= total) return;
    %(ps)s
    %(gs)s
    %(ms)s
    %(vs)s
    %(vmaxs)s
    %(ns)s
    %(keeps)s
    %(steps)s
    %(epss)s
    %(wds)s
    %(find)s
    T g = gs[k][e], m = ms[k][e], v = vs[k][e], p = ps[k][e];
    if (wds[k] != 0) g = g + (T)wds[k] * p;
    p = p * KEEP;
    m += (T)one_minus_b1 * (g - m);
    v = v * (T)b2 + (T)one_minus_b2 * (g * g);
    T den = v;
    if (amsgrad) {
        T top = vmaxs[k][e];
        den = (v > top || v != v) ? v : top;
        vmaxs[k][e] = den;
    }
    p -= STEP * (m / (sqrt(den) + EPS));
    ps[k][e] = p;
    ms[k][e] = m;
    vs[k][e] = v;
}
""".replace("NAME", name).replace("KEEP", read.format(slot="keep")).replace("STEP", read.format(slot="step")).replace(
        "EPS", read.format(slot="eps")) % {
        "p": _slots("T* p"), "g": _slots("const T* g"), "m": _slots("T* m"), "v": _slots("T* v"),
        "vmax": _slots("T* vmax"), "n": _slots("long long n"), "keep": _slots(f"{scalar} keep"),
        "step": _slots(f"{scalar} step"), "eps": _slots(f"{scalar} eps"), "wd": _slots("double wd"), "find": _FIND,
        "ps": _table("T*", "p"), "gs": _table("const T*", "g"), "ms": _table("T*", "m"), "vs": _table("T*", "v"),
        "vmaxs": _table("T*", "vmax"), "ns": _table("long long", "n"), "keeps": _table(scalar, "keep"),
        "steps": _table(scalar, "step"), "epss": _table(scalar, "eps"), "wds": _table("double", "wd")}


RAW.update({
    # clip_grad_norm's sums of squares: lanes[k] threads for array k (ceil(n / 1024)), lane t summing in double the
    # squares of elements t, t + lanes, ... (threads next to each other read numbers next to each other), its partial
    # sum written as T; clip_norm_factor then adds every partial in order.
    "multi_squares": r"""
extern "C" __global__ void xpnet_multi_squares(%(g)s, %(n)s, %(lanes)s, T* partial, long long total) {
    %%(index)s
    if (i >= total) return;
    %(gs)s
    %(ns)s
    %(ls)s
    long long k = 0, start = 0;
    while (i >= start + lanes[k]) { start += lanes[k]; ++k; }
    long long stride = lanes[k];
    double s = 0;
    for (long long e = i - start; e < sizes[k]; e += stride) {
        double v = (double)gs[k][e];
        s += v * v;
    }
    partial[i] = (T)s;
}
""" % {"g": _slots("const T* g"), "n": _slots("long long size"), "lanes": _slots("long long lane"),
       "gs": _table("const T*", "g"), "ns": _table("long long", "size"), "ls": _table("long long", "lane")},
    # Then each gradient times the factor (0-d), into new arrays y: the portable g * factor.
    "multi_scale": r"""
extern "C" __global__ void xpnet_multi_scale(%(g)s, %(y)s, %(n)s, const T* factor, long long total) {
    %%(index)s
    if (i >= total) return;
    %(gs)s
    %(ys)s
    %(ns)s
    %(find)s
    ys[k][e] = gs[k][e] * factor[0];
}
""" % {"g": _slots("const T* g"), "y": _slots("T* y"), "n": _slots("long long n"), "find": _FIND,
       "gs": _table("const T*", "g"), "ys": _table("T*", "y"), "ns": _table("long long", "n")},
    # PyTorch's lerp of each array (xpnet.optim.swa_utils' EMA and SWA averages), into new arrays y:
    # a + (T)weight * (c - a), or from the end (from_end, weight given as 1 - weight) c - (c - a) * (T)weight.
    "multi_lerp": r"""
extern "C" __global__ void xpnet_multi_lerp(%(a)s, %(c)s, %(y)s, %(n)s, double weight, long long from_end,
                                            long long total) {
    %%(index)s
    if (i >= total) return;
    %(as)s
    %(cs)s
    %(ys)s
    %(ns)s
    %(find)s
    T a = as[k][e], c = cs[k][e];
    ys[k][e] = from_end ? c - (c - a) * (T)weight : a + (T)weight * (c - a);
}
""" % {"a": _slots("const T* a"), "c": _slots("const T* c"), "y": _slots("T* y"), "n": _slots("long long n"),
       "find": _FIND, "as": _table("const T*", "a"), "cs": _table("const T*", "c"), "ys": _table("T*", "y"),
       "ns": _table("long long", "n")},
    # A copy of each array into new arrays y (AveragedModel's buffers, copied from the model at each update).
    "multi_copy": r"""
extern "C" __global__ void xpnet_multi_copy(%(a)s, %(y)s, %(n)s, long long total) {
    %%(index)s
    if (i >= total) return;
    %(as)s
    %(ys)s
    %(ns)s
    %(find)s
    ys[k][e] = as[k][e];
}
""" % {"a": _slots("const T* a"), "y": _slots("T* y"), "n": _slots("long long n"), "find": _FIND,
       "as": _table("const T*", "a"), "ys": _table("T*", "y"), "ns": _table("long long", "n")},
    # Whether every value of up to MULTI arrays is finite (xpnet.training.guard.all_finite, the epoch's check of the
    # weights), and ok_in: one block of SUM_THREADS threads, each counting the values v of its stride where v - v is
    # not 0 (inf and NaN), the counts added by the block; thread 0 writes ok (0-d bool).
    "multi_finite": r"""%%(block_sum)s
extern "C" __global__ void xpnet_multi_finite(%(a)s, %(n)s, const bool* ok_in, bool* ok) {
    __shared__ double part[SUM_THREADS];
    %(as)s
    %(ns)s
    double bad = 0;
    for (int k = 0; k < %(multi)d; ++k)
        for (long long e = threadIdx.x; e < ns[k]; e += SUM_THREADS) {
            T v = as[k][e];
            if (!(v - v == (T)0)) bad += 1;
        }
    bad = xpnet_block_sum(part, bad);
    if (threadIdx.x == 0) ok[0] = ok_in[0] && bad == 0;
}
""" % {"a": _slots("const T* a"), "n": _slots("long long n"), "as": _table("const T*", "a"),
       "ns": _table("long long", "n"), "multi": MULTI},
    # SGD for every parameter at once (xpnet.optim.SGD's step; Nesterov's PyTorch convention): with weight decay
    # (wd, per parameter, 0 where it spares one) g + wd * p first, the portable L2's new gradient; then p -= lr * g, or
    # with momentum (has_v, once every buffer is made) v = v * momentum + keep * g, then p -= lr * v, or with nesterov
    # p -= lr * (momentum * v + g): ELEMENTWISE["sgd"], ["sgd_momentum"] and ["sgd_nesterov"], the numbers cast to T.
    # multi_sgd takes lr as a double; multi_sgd_dev reads it from a 0-d array of T on the device (a captured step's
    # DeviceScalars).
    "multi_sgd": _multi_sgd("multi_sgd", "double lr", "(T)lr"),
    "multi_sgd_dev": _multi_sgd("multi_sgd_dev", "const T* lr", "lr[0]"),
    # Adam (and AdamW: keep = 1 - lr * weight_decay, 1 for a parameter it spares) for every parameter at once, the
    # statements of ELEMENTWISE["adamw"] with each number cast to T as CuPy casts a kernel's scalars; step and eps
    # per parameter (its own bias correction). Adam's L2 (wd per parameter, 0 where it spares one): g + wd * p first,
    # the portable L2's new gradient. AMSGrad (amsgrad, its buffers vmax): vmax = maximum(vmax, v) (NaN kept, as
    # NumPy's), and the step divides by sqrt(vmax). multi_adam takes keep, step and eps as doubles; multi_adam_dev
    # reads each from a 0-d array of T on the device (a captured step's DeviceScalars).
    "multi_adam": _multi_adam("multi_adam", "double", "(T){slot}s[k]"),
    "multi_adam_dev": _multi_adam("multi_adam_dev", "const T*", "{slot}s[k][0]"),
})
RAW = {name: source % {"unit": _UNIT % {"index": _INDEX}, "index": _INDEX, "philox": _PHILOX, "sigmoid": _SIGMOID,
                         "block_sum": _BLOCK_SUM}
       for name, source in RAW.items()}
