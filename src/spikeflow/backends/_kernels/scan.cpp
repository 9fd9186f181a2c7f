// The fused CPU scan: one generic forward / backward-through-time kernel, driven
// by a small per-neuron struct (step + vector-Jacobian product).
//
// Layout: x is [T, M] contiguous (M = B * prod(features)); every state field and
// every saved trajectory is a separate [T, M] (or [M]) array. The elements are
// cut into blocks of contiguous elements (64..1024, see block_size); OpenMP
// threads take blocks, and each block walks the whole sequence (forward:
// t = 0..T-1, backward: t = T-1..0) with its running state in a small per-thread
// buffer (cache-resident). The inner loop over the elements of a block is
// branch-free so that gcc vectorizes it.
//
// Bitwise agreement with the PyTorch reference (spikeflow/neurons/*.py) depends on
// three things: compiling with -ffp-contract=off (no FMA contraction) and without
// -ffast-math (no reassociation, no reciprocal or finite-math shortcuts; the
// -fno-trapping-math we do use only allows speculating arithmetic, which changes
// no value), evaluating every expression in the same order and grouping as the
// reference step function (each operation rounds once, in the scalar type S), and
// receiving the parameters already rounded to S (Python's materialize()). Python
// numbers in the reference (a gain, a surrogate alpha) are rounded to S before
// they multiply a tensor, exactly as torch does with a Python scalar.
//
// Neuron struct interface (S is float or double):
//   static constexpr int NS;   state fields carried by the kernel
//   static constexpr int NP;   numeric parameters (per-element values p[0..NP))
//   static constexpr int NG;   parameters with gradients: the first NG of p
//   S fwd(const S* p, S* st, S x) const
//       st: pre-step state in, post-step state out; returns the output at t.
//   template <class SG> S bwd(const SG& sg, const S* p, const S* st, S x, S g_out,
//                             S* g, S* gp) const
//       st: the pre-step state (the step is recomputed); g: gradient w.r.t. the
//       post-step state in, w.r.t. the pre-step state out; gp[0..NG): this step's
//       parameter gradients; returns the gradient w.r.t. x[t].
//
// The C entry points at the bottom take plain pointers (no torch headers).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

namespace {

constexpr double kPi = 3.141592653589793;  // Python's math.pi

// A branch-free select on a loop-invariant flag: `flag ? a : b` written with bit
// masks, because gcc does not vectorize a select whose condition is a scalar
// (loop-invariant) bool. Both operands are always computed; the mask picks one of
// them bit for bit (also for inf and NaN).
template <typename S> struct BitsOf;
template <> struct BitsOf<float> { using type = uint32_t; };
template <> struct BitsOf<double> { using type = uint64_t; };

template <typename S>
struct Flag {
  using U = typename BitsOf<S>::type;
  U mask;  // all ones when set
  explicit Flag(bool on = false) : mask(on ? ~U(0) : U(0)) {}
  inline S operator()(S a, S b) const {
    U ua, ub;
    std::memcpy(&ua, &a, sizeof(S));
    std::memcpy(&ub, &b, sizeof(S));
    U r = (ua & mask) | (ub & ~mask);
    S out;
    std::memcpy(&out, &r, sizeof(S));
    return out;
  }
};

// ---------------------------------------------------------------------------
// Surrogate derivatives g(u), exactly the formulas of spikeflow/surrogate.py
// (peak-1 convention: g(0) = 1). Codes = SurrogateKind values.

template <typename S>
struct SuperSpike {  // 0: 1 / (1 + alpha |u|)^2
  S alpha;
  inline S operator()(S u) const {
    S d = S(1) + alpha * std::abs(u);
    return S(1) / (d * d);
  }
};

template <typename S>
struct Sigmoid {  // 1: 4 s (1 - s), s = sigmoid(alpha u)
  S alpha;
  inline S operator()(S u) const {
    S s = S(1) / (S(1) + std::exp(-(alpha * u)));
    return S(4) * s * (S(1) - s);
  }
};

template <typename S>
struct ATan {  // 2: 1 / (1 + (pi alpha u / 2)^2); k = pi alpha / 2 rounded once to S
  S k;
  inline S operator()(S u) const {
    S w = k * u;
    return S(1) / (S(1) + w * w);
  }
};

template <typename S>
struct Triangle {  // 3: max(0, 1 - alpha |u|)
  S alpha;
  inline S operator()(S u) const {
    S v = S(1) - alpha * std::abs(u);
    return v > S(0) ? v : S(0);
  }
};

template <typename S>
struct StraightThrough {  // 4: 1 if u >= 0 else 0
  inline S operator()(S u) const { return u >= S(0) ? S(1) : S(0); }
};

template <typename S>
struct NoSurrogate {  // neurons without a spike nonlinearity
  inline S operator()(S) const { return S(0); }
};

// Configuration layout shared with spikeflow/backends/cpu.py (_config).
enum Cfg {
  CFG_KIND = 0,      // SurrogateKind value
  CFG_ALPHA = 1,     // surrogate alpha
  CFG_RESET = 2,     // 0 subtract, 1 zero, 2 none
  CFG_DETACH = 3,    // detach_reset
  CFG_GAIN = 4,      // CubaLIF gain
  CFG_CURFIRST = 5,  // CubaLIF order current_first
  CFG_NORMALIZE = 6, // CubaLIF / LI normalize
  CFG_ASN_SPIKES = 7,// ASN input mode "spikes"
  CFG_SIZE = 8
};

// Reset: v = h - s * r with r = h (zero), thr (subtract) or 0 (none), i.e.
// r = c_sub * thr + c_zero * h in coefficient form. Selecting h (instead of
// multiplying it by a 0/1 coefficient) keeps v identical to the reference's
// `h - s * thr` / `h - s * h` also for infinite h.
template <typename S>
struct ResetCoef {
  S c_sub, c_zero, keep;  // keep = 1 - detach_reset
  Flag<S> zero;
  explicit ResetCoef(const double* cfg) {
    int mode = int(cfg[CFG_RESET]);
    c_sub = mode == 0 ? S(1) : S(0);
    zero = Flag<S>(mode == 1);
    c_zero = mode == 1 ? S(1) : S(0);
    keep = cfg[CFG_DETACH] != 0.0 ? S(0) : S(1);
  }
  inline S amount(S h, S thr) const { return zero(h, c_sub * thr); }
};

// ---------------------------------------------------------------------------
// LIF (neurons/lif.py): h = beta v + x; s = H(h - thr); v' = reset(h, s).
// p = (beta, threshold); state = (v).
template <typename S>
struct LIF {
  static constexpr int NS = 1, NP = 2, NG = 2;
  ResetCoef<S> rc;
  explicit LIF(const double* cfg) : rc(cfg) {}

  inline S fwd(const S* p, S* st, S x) const {
    S h = p[0] * st[0] + x;
    S u = h - p[1];
    S s = u > S(0) ? S(1) : S(0);
    st[0] = h - s * rc.amount(h, p[1]);
    return s;
  }

  template <class SG>
  inline S bwd(const SG& sg, const S* p, const S* st, S x, S g_out, S* g, S* gp) const {
    S v = st[0];
    S h = p[0] * v + x;
    S u = h - p[1];
    S s = u > S(0) ? S(1) : S(0);
    S r = rc.amount(h, p[1]);
    S gv = g[0];
    S gs = g_out - rc.keep * (gv * r);  // d out + d v'/d s (through the reset)
    S gu = gs * sg(u);
    S gh = gv * (S(1) - s * rc.c_zero) + gu;
    gp[0] = gh * v;                          // beta
    gp[1] = -(gv * s * rc.c_sub) - gu;       // threshold
    g[0] = gh * p[0];
    return gh;
  }
};

// ---------------------------------------------------------------------------
// CubaLIF without alpha_rec (neurons/cuba.py); i_rec is carried by Python.
// p = (alpha, beta, threshold); state = (v, i).
template <typename S>
struct Cuba {
  static constexpr int NS = 2, NP = 3, NG = 3;
  ResetCoef<S> rc;
  S gain, nrm;
  Flag<S> cur_first, normalize;
  explicit Cuba(const double* cfg) : rc(cfg) {
    gain = S(cfg[CFG_GAIN]);
    cur_first = Flag<S>(cfg[CFG_CURFIRST] != 0.0);
    normalize = Flag<S>(cfg[CFG_NORMALIZE] != 0.0);
    nrm = cfg[CFG_NORMALIZE] != 0.0 ? S(1) : S(0);
  }

  inline S fwd(const S* p, S* st, S x) const {
    S a_i = normalize(S(1) - p[0], S(1));
    S a_v = normalize(S(1) - p[1], S(1));
    S i_new = p[0] * st[1] + a_i * x;
    S i_drive = cur_first(i_new, st[1]);
    S h = p[1] * st[0] + a_v * (gain * i_drive);
    S u = h - p[2];
    S s = u > S(0) ? S(1) : S(0);
    st[0] = h - s * rc.amount(h, p[2]);
    st[1] = i_new;
    return s;
  }

  template <class SG>
  inline S bwd(const SG& sg, const S* p, const S* st, S x, S g_out, S* g, S* gp) const {
    S v = st[0], i = st[1];
    S a_i = normalize(S(1) - p[0], S(1));
    S a_v = normalize(S(1) - p[1], S(1));
    S i_new = p[0] * i + a_i * x;
    S i_drive = cur_first(i_new, i);
    S drive = gain * i_drive;
    S h = p[1] * v + a_v * drive;
    S u = h - p[2];
    S s = u > S(0) ? S(1) : S(0);
    S r = rc.amount(h, p[2]);
    S gv = g[0], gi = g[1];
    S gs = g_out - rc.keep * (gv * r);
    S gu = gs * sg(u);
    S gh = gv * (S(1) - s * rc.c_zero) + gu;
    S g_drive_i = gh * a_v * gain;  // gradient reaching i_drive
    S gi_tot = gi + cur_first(g_drive_i, S(0));
    gp[0] = gi_tot * i - nrm * (gi_tot * x);       // alpha (a_i = 1 - alpha)
    gp[1] = gh * v - nrm * (gh * drive);           // beta  (a_v = 1 - beta)
    gp[2] = -(gv * s * rc.c_sub) - gu;             // threshold
    g[0] = gh * p[1];
    g[1] = p[0] * gi_tot + cur_first(S(0), g_drive_i);
    return a_i * gi_tot;
  }
};

// ---------------------------------------------------------------------------
// ASN (neurons/asn.py). p = (d_beta, d_phi, d_eta, d_gamma, m_f, theta0, h, bias),
// state = (i, s_dyn, theta_dyn, s_hat). No parameter gradients.
template <typename S>
struct ASN {
  static constexpr int NS = 4, NP = 8, NG = 0;
  Flag<S> spikes;
  explicit ASN(const double* cfg) : spikes(cfg[CFG_ASN_SPIKES] != 0.0) {}

  inline S fwd(const S* p, S* st, S x) const {
    S i = spikes(p[0] * st[0] + x, x);
    S s_dyn = (S(1) - p[1]) * i + p[1] * st[1];
    S sv = p[7] + s_dyn;
    S theta = p[5] + st[2];
    S sh = p[2] * st[3];
    S u = (sv - sh) - S(0.5) * theta;
    S z = u > S(0) ? S(1) : S(0);
    S sh_new = sh + theta * z;
    S td = p[3] * (st[2] + p[4] * theta * z);
    st[0] = i;
    st[1] = s_dyn;
    st[2] = td;
    st[3] = sh_new;
    return p[6] * z;
  }

  template <class SG>
  inline S bwd(const SG& sg, const S* p, const S* st, S x, S g_out, S* g, S* gp) const {
    (void)gp;
    S i = spikes(p[0] * st[0] + x, x);
    S s_dyn = (S(1) - p[1]) * i + p[1] * st[1];
    S sv = p[7] + s_dyn;
    S theta = p[5] + st[2];
    S sh = p[2] * st[3];
    S u = (sv - sh) - S(0.5) * theta;
    S z = u > S(0) ? S(1) : S(0);
    S gi = g[0], gsd = g[1], gtd = g[2], gsh = g[3];
    S a = p[3] * gtd;  // gradient reaching (theta_dyn + m_f theta z)
    S gz = p[6] * g_out + theta * gsh + a * p[4] * theta;
    S gu = gz * sg(u);
    S gtheta = z * gsh + a * p[4] * z - S(0.5) * gu;
    S gsd_tot = gsd + gu;
    S gi_tot = gi + (S(1) - p[1]) * gsd_tot;
    g[0] = spikes(p[0] * gi_tot, S(0));
    g[1] = p[1] * gsd_tot;
    g[2] = a + gtheta;
    g[3] = p[2] * (gsh - gu);
    return gi_tot;
  }
};

// ---------------------------------------------------------------------------
// Graded LIF of seed 001 (neurons/graded.py). p = (beta, threshold, penalty),
// state = (v, o); the output at t is the pre-step o.
template <typename S>
struct Graded {
  static constexpr int NS = 2, NP = 3, NG = 3;
  explicit Graded(const double*) {}

  inline S fwd(const S* p, S* st, S x) const {
    S h = p[0] * st[0] + x;
    S d = h - p[1];
    S o = d > S(0) ? d : S(0);
    S f = o > S(0) ? S(1) : S(0);
    S out = st[1];
    st[0] = h - (p[2] + o) * f;
    st[1] = o;
    return out;
  }

  template <class SG>
  inline S bwd(const SG&, const S* p, const S* st, S x, S g_out, S* g, S* gp) const {
    S v = st[0];
    S h = p[0] * v + x;
    S d = h - p[1];
    S o = d > S(0) ? d : S(0);
    S f = o > S(0) ? S(1) : S(0);
    S gv = g[0], go = g[1];
    S gu = (go - gv * f) * f;  // relu'(d) = (o > 0); the gate f has no gradient
    S gh = gv + gu;
    gp[0] = gh * v;
    gp[1] = -gu;
    gp[2] = -(gv * f);
    g[0] = gh * p[0];
    g[1] = g_out;
    return gh;
  }
};

// ---------------------------------------------------------------------------
// LI (neurons/integrator.py). p = (beta), state = (v); the output is v.
template <typename S>
struct LI {
  static constexpr int NS = 1, NP = 1, NG = 1;
  S nrm;
  Flag<S> normalize;
  explicit LI(const double* cfg) : normalize(cfg[CFG_NORMALIZE] != 0.0) {
    nrm = cfg[CFG_NORMALIZE] != 0.0 ? S(1) : S(0);
  }

  inline S fwd(const S* p, S* st, S x) const {
    S a = normalize(S(1) - p[0], S(1));
    S v = p[0] * st[0] + a * x;
    st[0] = v;
    return v;
  }

  template <class SG>
  inline S bwd(const SG&, const S* p, const S* st, S x, S g_out, S* g, S* gp) const {
    S a = normalize(S(1) - p[0], S(1));
    S gt = g_out + g[0];
    gp[0] = gt * st[0] - nrm * (gt * x);
    g[0] = p[0] * gt;
    return a * gt;
  }
};

// ---------------------------------------------------------------------------
// The generic kernels.

template <int N>
constexpr int at_least_one() { return N > 0 ? N : 1; }

// Elements per block: long contiguous rows stream best (up to MAX_BLOCK elements),
// but keep a few blocks per thread when M is small. Blocking never changes a
// result: every element is computed on its own.
constexpr int64_t MIN_BLOCK = 64, MAX_BLOCK = 1024;

inline int64_t block_size(int64_t M, int nthreads) {
  const int64_t per = 4 * int64_t(std::max(1, nthreads));
  const int64_t target = (M + per - 1) / per;
  return std::min(MAX_BLOCK, std::max(MIN_BLOCK, (target + MIN_BLOCK - 1) / MIN_BLOCK * MIN_BLOCK));
}

inline int threads_for(int64_t nblk, int nthreads) {
  return int(std::max<int64_t>(1, std::min<int64_t>(nthreads, nblk)));
}

// p[k * blk + j] = parameter k of element m0 + j (stride 0: one shared value).
template <typename S, int NP>
inline void load_params(S* p, int64_t blk, const void* const* prm, const int64_t* pstride,
                        int64_t m0, int64_t len) {
  for (int k = 0; k < NP; ++k) {
    const S* src = static_cast<const S*>(prm[k]);
    S* dst = p + k * blk;
    if (pstride[k] == 0) {
      const S value = src[0];
      for (int64_t j = 0; j < len; ++j) dst[j] = value;
    } else {
      std::memcpy(dst, src + m0, len * sizeof(S));
    }
  }
}

// One forward step over a block: the state is read from `cur` and written to `nxt`
// (both laid out [k * blk + j]; they may be the same buffer, as every element only
// touches its own slots), the outputs go to `ot`.
template <typename S, typename N>
inline void step_block(const N& n, const S* p, const S* cur, S* nxt, const S* __restrict__ xt,
                       S* __restrict__ ot, int64_t blk, int64_t len) {
  constexpr int NS = N::NS, NP = N::NP;
#pragma GCC ivdep
  for (int64_t j = 0; j < len; ++j) {
    S pv[at_least_one<NP>()];
    S sv[NS];
    for (int k = 0; k < NP; ++k) pv[k] = p[k * blk + j];
    for (int k = 0; k < NS; ++k) sv[k] = cur[k * blk + j];
    ot[j] = n.fwd(pv, sv, xt[j]);
    for (int k = 0; k < NS; ++k) nxt[k * blk + j] = sv[k];
  }
}

// Forward: out[t]; optionally post[k][t] (the state after every step) and
// ckpt[k][c] (the state before step c * K: checkpoints for the backward); fin[k].
template <typename S, typename N>
void forward_impl(const N& n, int64_t T, int64_t M, const S* __restrict__ x,
                  const void* const* init, const void* const* prm, const int64_t* pstride,
                  S* __restrict__ out, void* const* post, void* const* ckpt, int64_t K,
                  void* const* fin, int nthreads) {
  constexpr int NS = N::NS, NP = N::NP;
  const int64_t blk = block_size(M, nthreads);
  const int64_t nblk = (M + blk - 1) / blk;
#pragma omp parallel num_threads(threads_for(nblk, nthreads))
  {
    // Per-thread scratch: the running state and the block's parameters.
    std::unique_ptr<S[]> buffer(new S[(NS + NP) * blk]);
    S* st = buffer.get();
    S* p = st + NS * blk;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblk; ++b) {
      const int64_t m0 = b * blk;
      const int64_t len = std::min(blk, M - m0);
      for (int k = 0; k < NS; ++k)
        std::memcpy(st + k * blk, static_cast<const S*>(init[k]) + m0, len * sizeof(S));
      load_params<S, NP>(p, blk, prm, pstride, m0, len);
      for (int64_t t = 0; t < T; ++t) {
        if (ckpt != nullptr && t % K == 0)
          for (int k = 0; k < NS; ++k)
            std::memcpy(static_cast<S*>(ckpt[k]) + (t / K) * M + m0, st + k * blk, len * sizeof(S));
        step_block(n, p, st, st, x + t * M + m0, out + t * M + m0, blk, len);
        if (post != nullptr)
          for (int k = 0; k < NS; ++k)
            std::memcpy(static_cast<S*>(post[k]) + t * M + m0, st + k * blk, len * sizeof(S));
      }
      for (int k = 0; k < NS; ++k)
        std::memcpy(static_cast<S*>(fin[k]) + m0, st + k * blk, len * sizeof(S));
    }
  }
}

// Backward: reverse walk, recomputing each step from the state before it, which
// is init (t = 0) or post[t-1] when every state was saved; otherwise the walk goes
// segment by segment (K steps from checkpoint ckpt[c], last segment first), first
// recomputing the segment's states into a per-thread buffer. The recomputed
// states are bit for bit the forward's.
// g_out, g_fin[k], g_traj[k], g_x, g_init[k], g_prm[k] may be null (zero / unused).
template <typename S, typename N, typename SG>
void backward_impl(const N& n, const SG& sg, int64_t T, int64_t M, const S* __restrict__ x,
                   const void* const* init, const void* const* post, const void* const* ckpt,
                   int64_t K, const void* const* prm, const int64_t* pstride, const S* g_out,
                   const void* const* g_fin, const void* const* g_traj, S* g_x,
                   void* const* g_init, void* const* g_prm, int nthreads) {
  constexpr int NS = N::NS, NP = N::NP, NG = N::NG;
  constexpr int NG1 = at_least_one<NG>();
  const int64_t blk = block_size(M, nthreads);
  const int64_t nblk = (M + blk - 1) / blk;
  const bool saved_all = post != nullptr;
  const int64_t seg_len = saved_all ? std::max<int64_t>(T, 1) : K;
  const int64_t nseg = (T + seg_len - 1) / seg_len;
#pragma omp parallel num_threads(threads_for(nblk, nthreads))
  {
    // Per-thread scratch: parameters, the running state gradient, the parameter
    // gradient accumulators, zeros (a missing g_out), a sink (an unwanted g_x or
    // a recomputed output) and, with checkpoints, a segment of states.
    const int64_t seg_size = saved_all ? 0 : seg_len * NS * blk;
    std::unique_ptr<S[]> buffer(new S[(NP + NS + NG1 + 2) * blk + seg_size]);
    S* p = buffer.get();
    S* g = p + NP * blk;
    S* acc = g + NS * blk;
    S* zeros = acc + NG1 * blk;
    S* sink = zeros + blk;
    S* seg = sink + blk;  // seg[(t - t0) * NS * blk + k * blk + j]: state before step t
    std::fill(zeros, zeros + blk, S(0));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblk; ++b) {
      const int64_t m0 = b * blk;
      const int64_t len = std::min(blk, M - m0);
      load_params<S, NP>(p, blk, prm, pstride, m0, len);
      for (int k = 0; k < NS; ++k) {
        if (g_fin[k] != nullptr)
          std::memcpy(g + k * blk, static_cast<const S*>(g_fin[k]) + m0, len * sizeof(S));
        else
          std::fill(g + k * blk, g + k * blk + len, S(0));
      }
      std::fill(acc, acc + NG1 * blk, S(0));
      for (int64_t c = nseg - 1; c >= 0; --c) {
        const int64_t t0 = c * seg_len;
        const int64_t t1 = std::min(T, t0 + seg_len);
        if (!saved_all) {
          for (int k = 0; k < NS; ++k)
            std::memcpy(seg + k * blk, static_cast<const S*>(ckpt[k]) + c * M + m0,
                        len * sizeof(S));
          for (int64_t t = t0; t + 1 < t1; ++t) {
            step_block(n, p, seg + (t - t0) * NS * blk, seg + (t + 1 - t0) * NS * blk,
                       x + t * M + m0, sink, blk, len);
          }
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          for (int k = 0; k < NS; ++k) {
            if (g_traj[k] != nullptr) {
              const S* __restrict__ gt = static_cast<const S*>(g_traj[k]) + t * M + m0;
              S* __restrict__ gk = g + k * blk;
              for (int64_t j = 0; j < len; ++j) gk[j] += gt[j];
            }
          }
          const S* pre[NS];
          for (int k = 0; k < NS; ++k) {
            if (!saved_all)
              pre[k] = seg + (t - t0) * NS * blk + k * blk;
            else if (t == 0)
              pre[k] = static_cast<const S*>(init[k]) + m0;
            else
              pre[k] = static_cast<const S*>(post[k]) + (t - 1) * M + m0;
          }
          const S* __restrict__ xt = x + t * M + m0;
          const S* __restrict__ got = g_out != nullptr ? g_out + t * M + m0 : zeros;
          S* __restrict__ gxt = g_x != nullptr ? g_x + t * M + m0 : sink;
#pragma GCC ivdep
          for (int64_t j = 0; j < len; ++j) {
            S pv[at_least_one<NP>()];
            S sv[NS];
            S gv[NS];
            S gp[NG1];
            for (int k = 0; k < NP; ++k) pv[k] = p[k * blk + j];
            for (int k = 0; k < NS; ++k) sv[k] = pre[k][j];
            for (int k = 0; k < NS; ++k) gv[k] = g[k * blk + j];
            gxt[j] = n.template bwd<SG>(sg, pv, sv, xt[j], got[j], gv, gp);
            for (int k = 0; k < NS; ++k) g[k * blk + j] = gv[k];
            for (int k = 0; k < NG; ++k) acc[k * blk + j] += gp[k];
          }
        }
      }
      for (int k = 0; k < NS; ++k)
        if (g_init[k] != nullptr)
          std::memcpy(static_cast<S*>(g_init[k]) + m0, g + k * blk, len * sizeof(S));
      for (int k = 0; k < NG; ++k)
        if (g_prm[k] != nullptr)
          std::memcpy(static_cast<S*>(g_prm[k]) + m0, acc + k * blk, len * sizeof(S));
    }
  }
}

// ---------------------------------------------------------------------------
// Dispatch.

enum NeuronCode { LIF_CODE = 0, CUBA_CODE = 1, ASN_CODE = 2, GRADED_CODE = 3, LI_CODE = 4 };

struct Args {
  int64_t T, M;
  const void* x;
  const void* const* init;
  const void* const* post;
  const void* const* ckpt;
  int64_t K;
  const void* const* prm;
  const int64_t* pstride;
  const double* cfg;
  void* out;
  void* const* post_out;
  void* const* ckpt_out;
  void* const* fin;
  const void* g_out;
  const void* const* g_fin;
  const void* const* g_traj;
  void* g_x;
  void* const* g_init;
  void* const* g_prm;
  int nthreads;
};

template <typename S, typename N>
int run_forward(const Args& a) {
  N n(a.cfg);
  forward_impl<S, N>(n, a.T, a.M, static_cast<const S*>(a.x), a.init, a.prm, a.pstride,
                     static_cast<S*>(a.out), a.post_out, a.ckpt_out, a.K, a.fin, a.nthreads);
  return 0;
}

template <typename S, typename N, typename SG>
int run_backward_sg(const Args& a, const N& n, const SG& sg) {
  backward_impl<S, N, SG>(n, sg, a.T, a.M, static_cast<const S*>(a.x), a.init, a.post, a.ckpt,
                          a.K, a.prm, a.pstride, static_cast<const S*>(a.g_out), a.g_fin,
                          a.g_traj, static_cast<S*>(a.g_x), a.g_init, a.g_prm, a.nthreads);
  return 0;
}

template <typename S, typename N>
int run_backward_spiking(const Args& a) {
  N n(a.cfg);
  const double alpha = a.cfg[CFG_ALPHA];
  switch (int(a.cfg[CFG_KIND])) {
    case 0: return run_backward_sg<S>(a, n, SuperSpike<S>{S(alpha)});
    case 1: return run_backward_sg<S>(a, n, Sigmoid<S>{S(alpha)});
    case 2: return run_backward_sg<S>(a, n, ATan<S>{S(0.5 * kPi * alpha)});
    case 3: return run_backward_sg<S>(a, n, Triangle<S>{S(alpha)});
    case 4: return run_backward_sg<S>(a, n, StraightThrough<S>{});
    default: return 2;  // unknown surrogate kind
  }
}

template <typename S, typename N>
int run_backward_smooth(const Args& a) {
  N n(a.cfg);
  return run_backward_sg<S>(a, n, NoSurrogate<S>{});
}

template <typename S>
int forward_dispatch(int neuron, const Args& a) {
  switch (neuron) {
    case LIF_CODE: return run_forward<S, LIF<S>>(a);
    case CUBA_CODE: return run_forward<S, Cuba<S>>(a);
    case ASN_CODE: return run_forward<S, ASN<S>>(a);
    case GRADED_CODE: return run_forward<S, Graded<S>>(a);
    case LI_CODE: return run_forward<S, LI<S>>(a);
    default: return 1;  // unknown neuron
  }
}

template <typename S>
int backward_dispatch(int neuron, const Args& a) {
  switch (neuron) {
    case LIF_CODE: return run_backward_spiking<S, LIF<S>>(a);
    case CUBA_CODE: return run_backward_spiking<S, Cuba<S>>(a);
    case ASN_CODE: return run_backward_spiking<S, ASN<S>>(a);
    case GRADED_CODE: return run_backward_smooth<S, Graded<S>>(a);
    case LI_CODE: return run_backward_smooth<S, LI<S>>(a);
    default: return 1;
  }
}

}  // namespace

extern "C" {

// ABI version: bump when any signature or the configuration layout changes.
int sf_abi_version(void) { return 2; }

// dtype: 0 float32, 1 float64. post (the state after every step, [T, M] per
// field) and ckpt (the state before every K-th step, [ceil(T / K), M] per field)
// may each be null. Returns 0 on success.
int sf_forward(int neuron, int dtype, int64_t T, int64_t M, const void* x,
               const void* const* init, const void* const* prm, const int64_t* pstride,
               const double* cfg, void* out, void* const* post, void* const* ckpt, int64_t K,
               void* const* fin, int nthreads) {
  if (ckpt != nullptr && K < 1) return 4;
  Args a{};
  a.T = T; a.M = M; a.x = x; a.init = init; a.prm = prm; a.pstride = pstride; a.cfg = cfg;
  a.out = out; a.post_out = post; a.ckpt_out = ckpt; a.K = K; a.fin = fin;
  a.nthreads = nthreads;
  if (dtype == 0) return forward_dispatch<float>(neuron, a);
  if (dtype == 1) return forward_dispatch<double>(neuron, a);
  return 3;  // unknown dtype
}

// Exactly one of post and ckpt (with its K) is given: what the forward saved.
int sf_backward(int neuron, int dtype, int64_t T, int64_t M, const void* x,
                const void* const* init, const void* const* post, const void* const* ckpt,
                int64_t K, const void* const* prm, const int64_t* pstride, const double* cfg,
                const void* g_out, const void* const* g_fin, const void* const* g_traj,
                void* g_x, void* const* g_init, void* const* g_prm, int nthreads) {
  if ((post == nullptr) == (ckpt == nullptr) || (ckpt != nullptr && K < 1)) return 4;
  Args a{};
  a.T = T; a.M = M; a.x = x; a.init = init; a.post = post; a.ckpt = ckpt; a.K = K;
  a.prm = prm; a.pstride = pstride; a.cfg = cfg; a.g_out = g_out; a.g_fin = g_fin;
  a.g_traj = g_traj; a.g_x = g_x; a.g_init = g_init; a.g_prm = g_prm; a.nthreads = nthreads;
  if (dtype == 0) return backward_dispatch<float>(neuron, a);
  if (dtype == 1) return backward_dispatch<double>(neuron, a);
  return 3;
}

}  // extern "C"
