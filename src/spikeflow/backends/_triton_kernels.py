"""Triton kernels of the ``"triton"`` backend (see :mod:`spikeflow.backends.triton`).

Imported only when the backend first runs: it needs :mod:`triton`, and ``@triton.jit``
decides at definition time whether a kernel is compiled or run by Triton's
interpreter (``TRITON_INTERPRET=1``, how the tests check these kernels on CPU
tensors).

One generic forward kernel (:func:`scan_forward`) and one generic backward kernel
(:func:`scan_backward`), specialised at compile time by ``NEURON`` (a constexpr
code, the same codes as ``_kernels/scan.cpp``) and the neuron's static settings
(reset mode, order, ...). Each neuron is two small ``@triton.jit`` functions, its
step (:func:`_step`) and the step's vector-Jacobian product (:func:`_vjp`),
transcribed from the structs in ``scan.cpp`` in the same order of operations (the
forward must round exactly as the reference's torch ops do, so kernels are launched
with ``enable_fp_fusion=False``). State and parameters live in registers as
fixed-arity tuples: up to 4 state fields ``s0..s3``, 8 parameters ``p0..p7`` and 3
learnable parameters; a neuron with fewer fields never touches the others, which
the compiler removes.

Layout: ``M = B * prod(features)`` elements, ``x`` and every per-step tensor
``[T, M]``; each state field, trajectory field, gradient field a separate pointer;
parameters ``[NP, M]`` (expanded per element); checkpoints ``[ceil(T / K), NS, M]``;
the backward's segment scratch ``[K, NS, M]``. Program ``pid`` owns elements
``pid * BLOCK ...`` and walks the whole sequence for them.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Neuron codes (the NeuronCode enum of scan.cpp; spikeflow.backends._fused.NEURONS).
LIF, CUBA, ASN, GRADED, LI = 0, 1, 2, 3, 4


# ---------------------------------------------------------------------------
# Small helpers


@triton.jit
def _ld(ptr, idx, mask, ON: tl.constexpr, zero):
    """``ptr[idx]`` where ``ON`` (a constexpr), else ``zero``."""
    if ON:
        value = tl.load(ptr + idx, mask=mask, other=0.0)
    else:
        value = zero
    return value


@triton.jit
def _st(ptr, idx, mask, value, ON: tl.constexpr):
    if ON:
        tl.store(ptr + idx, value, mask=mask)


@triton.jit
def _heaviside(u):
    return (u > 0.0).to(u.dtype)


@triton.jit
def _surrogate(u, c, KIND: tl.constexpr):
    """The surrogate derivative g(u) (codes: SurrogateKind); ``c`` is alpha, or
    ``pi * alpha / 2`` rounded once for atan (as in scan.cpp)."""
    if KIND == 0:  # superspike: 1 / (1 + alpha |u|)^2
        d = 1.0 + c * tl.abs(u)
        g = 1.0 / (d * d)
    elif KIND == 1:  # sigmoid: 4 s (1 - s), s = sigmoid(alpha u)
        s = 1.0 / (1.0 + tl.exp(-(c * u)))
        g = 4.0 * s * (1.0 - s)
    elif KIND == 2:  # atan: 1 / (1 + (k u)^2)
        w = c * u
        g = 1.0 / (1.0 + w * w)
    elif KIND == 3:  # triangle: max(0, 1 - alpha |u|)
        v = 1.0 - c * tl.abs(u)
        g = tl.where(v > 0.0, v, 0.0)
    else:  # straight_through: 1 if u >= 0 else 0
        g = (u >= 0.0).to(u.dtype)
    return g


@triton.jit
def _reset(h, s, thr, RESET: tl.constexpr):
    """Reset of the LIF family (neurons/lif.py reset_membrane): 0 subtract, 1 zero, 2 none."""
    if RESET == 0:
        v = h - s * thr
    elif RESET == 1:
        v = h - s * h
    else:
        v = h
    return v


@triton.jit
def _reset_vjp(h, s, thr, u, gv, g_out, c, RESET: tl.constexpr, DETACH: tl.constexpr,
               SURR: tl.constexpr):
    """Backward through ``s = H(u)`` and ``v' = reset(h, s)`` (LIF and CubaLIF):
    returns (d/dh, d/dthreshold) given d/dv' = gv and d/ds = g_out."""
    if RESET == 0:
        r = thr
    else:
        r = h
    if DETACH or RESET == 2:
        gs = g_out
    else:
        gs = g_out - gv * r  # through the reset: d v' / d s = -r
    gu = gs * _surrogate(u, c, SURR)
    if RESET == 1:
        gh = gv * (1.0 - s) + gu
    else:
        gh = gv + gu
    if RESET == 0:
        gthr = -(gv * s) - gu
    else:
        gthr = -gu
    return gh, gthr


# ---------------------------------------------------------------------------
# The neurons: one step and its vector-Jacobian product (scan.cpp's structs)


@triton.jit
def _cuba_membrane(x, v, i, p0, p1, gain, CUR_FIRST: tl.constexpr, NORMALIZE: tl.constexpr):
    """CubaLIF's update before the threshold: (i_new, drive, h)."""
    if NORMALIZE:
        i_new = p0 * i + (1.0 - p0) * x
    else:
        i_new = p0 * i + x
    if CUR_FIRST:
        i_drive = i_new
    else:
        i_drive = i
    drive = gain * i_drive
    if NORMALIZE:
        h = p1 * v + (1.0 - p1) * drive
    else:
        h = p1 * v + drive
    return i_new, drive, h


@triton.jit
def _asn_membrane(x, s0, s1, s2, s3, p0, p1, p2, p5, p7, ASN_SPIKES: tl.constexpr):
    """ASN's update before the spike decision: (i, s_dyn, theta, s_hat decayed, u)."""
    if ASN_SPIKES:
        i = p0 * s0 + x
    else:
        i = x
    s_dyn = (1.0 - p1) * i + p1 * s1
    sv = p7 + s_dyn
    theta = p5 + s2
    sh = p2 * s3
    u = (sv - sh) - 0.5 * theta
    return i, s_dyn, theta, sh, u


@triton.jit
def _step(p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, x, gain,
          NEURON: tl.constexpr, RESET: tl.constexpr, CUR_FIRST: tl.constexpr,
          NORMALIZE: tl.constexpr, ASN_SPIKES: tl.constexpr):
    """One forward step: returns (output, s0', s1', s2', s3')."""
    if NEURON == 0:  # LIF: p = (beta, threshold), s = (v)
        h = p0 * s0 + x
        u = h - p1
        s = _heaviside(u)
        out = s
        s0 = _reset(h, s, p1, RESET)
    elif NEURON == 1:  # CubaLIF: p = (alpha, beta, threshold), s = (v, i)
        i_new, drive, h = _cuba_membrane(x, s0, s1, p0, p1, gain, CUR_FIRST, NORMALIZE)
        u = h - p2
        s = _heaviside(u)
        out = s
        s0 = _reset(h, s, p2, RESET)
        s1 = i_new
    elif NEURON == 2:  # ASN: p = (d_beta, d_phi, d_eta, d_gamma, m_f, theta0, h, bias)
        i, s_dyn, theta, sh, u = _asn_membrane(x, s0, s1, s2, s3, p0, p1, p2, p5, p7, ASN_SPIKES)
        z = _heaviside(u)
        sh_new = sh + theta * z
        td = p3 * (s2 + p4 * theta * z)
        out = p6 * z
        s0 = i
        s1 = s_dyn
        s2 = td
        s3 = sh_new
    elif NEURON == 3:  # graded LIF: p = (beta, threshold, penalty), s = (v, o)
        h = p0 * s0 + x
        d = h - p1
        o = tl.where(d > 0.0, d, 0.0)
        f = _heaviside(o)
        out = s1
        s0 = h - (p2 + o) * f
        s1 = o
    else:  # LI: p = (beta), s = (v)
        if NORMALIZE:
            v = p0 * s0 + (1.0 - p0) * x
        else:
            v = p0 * s0 + x
        out = v
        s0 = v
    return out, s0, s1, s2, s3


@triton.jit
def _vjp(p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, x, g_out, g0, g1, g2, g3, gain, c,
         NEURON: tl.constexpr, RESET: tl.constexpr, DETACH: tl.constexpr,
         CUR_FIRST: tl.constexpr, NORMALIZE: tl.constexpr, ASN_SPIKES: tl.constexpr,
         SURR: tl.constexpr):
    """The step's vector-Jacobian product, recomputing it from the pre-step state
    ``s``: given d/dout = g_out and d/d(post-step state) = g, returns
    (d/dx, d/d(pre-step state) g0..g3, this step's parameter gradients d0..d2)."""
    zero = tl.zeros_like(g_out)
    d0 = zero
    d1 = zero
    d2 = zero
    if NEURON == 0:
        v = s0
        h = p0 * v + x
        u = h - p1
        s = _heaviside(u)
        gh, gthr = _reset_vjp(h, s, p1, u, g0, g_out, c, RESET, DETACH, SURR)
        d0 = gh * v  # beta
        d1 = gthr  # threshold
        g0 = gh * p0
        gx = gh
    elif NEURON == 1:
        v = s0
        i = s1
        i_new, drive, h = _cuba_membrane(x, v, i, p0, p1, gain, CUR_FIRST, NORMALIZE)
        u = h - p2
        s = _heaviside(u)
        gh, gthr = _reset_vjp(h, s, p2, u, g0, g_out, c, RESET, DETACH, SURR)
        if NORMALIZE:
            g_drive_i = gh * (1.0 - p1) * gain  # gradient reaching i_drive
        else:
            g_drive_i = gh * gain
        if CUR_FIRST:
            gi_tot = g1 + g_drive_i
        else:
            gi_tot = g1
        if NORMALIZE:
            d0 = gi_tot * i - gi_tot * x  # alpha (a_i = 1 - alpha)
            d1 = gh * v - gh * drive  # beta (a_v = 1 - beta)
        else:
            d0 = gi_tot * i
            d1 = gh * v
        d2 = gthr  # threshold
        g0 = gh * p1
        if CUR_FIRST:
            g1 = p0 * gi_tot
        else:
            g1 = p0 * gi_tot + g_drive_i
        if NORMALIZE:
            gx = (1.0 - p0) * gi_tot
        else:
            gx = gi_tot
    elif NEURON == 2:
        i, s_dyn, theta, sh, u = _asn_membrane(x, s0, s1, s2, s3, p0, p1, p2, p5, p7, ASN_SPIKES)
        z = _heaviside(u)
        a = p3 * g2  # gradient reaching (theta_dyn + m_f theta z)
        gz = p6 * g_out + theta * g3 + a * p4 * theta
        gu = gz * _surrogate(u, c, SURR)
        gtheta = z * g3 + a * p4 * z - 0.5 * gu
        gsd_tot = g1 + gu
        gi_tot = g0 + (1.0 - p1) * gsd_tot
        if ASN_SPIKES:
            g0 = p0 * gi_tot
        else:
            g0 = zero
        g1 = p1 * gsd_tot
        g2 = a + gtheta
        g3 = p2 * (g3 - gu)
        gx = gi_tot
    elif NEURON == 3:
        v = s0
        h = p0 * v + x
        d = h - p1
        o = tl.where(d > 0.0, d, 0.0)
        f = _heaviside(o)
        gu = (g1 - g0 * f) * f  # relu'(d) = (o > 0); the gate f has no gradient
        gh = g0 + gu
        d0 = gh * v  # beta
        d1 = -gu  # threshold
        d2 = -(g0 * f)  # penalty
        g0 = gh * p0
        g1 = g_out
        gx = gh
    else:
        gt = g_out + g0
        if NORMALIZE:
            d0 = gt * s0 - gt * x
            gx = (1.0 - p0) * gt
        else:
            d0 = gt * s0
            gx = gt
        g0 = p0 * gt
    return gx, g0, g1, g2, g3, d0, d1, d2


# ---------------------------------------------------------------------------
# The generic kernels


@triton.jit
def _load_state(p0, p1, p2, p3, idx, mask, NS: tl.constexpr, zero):
    s0 = _ld(p0, idx, mask, NS > 0, zero)
    s1 = _ld(p1, idx, mask, NS > 1, zero)
    s2 = _ld(p2, idx, mask, NS > 2, zero)
    s3 = _ld(p3, idx, mask, NS > 3, zero)
    return s0, s1, s2, s3


@triton.jit
def _store_state(p0, p1, p2, p3, idx, mask, s0, s1, s2, s3, NS: tl.constexpr):
    _st(p0, idx, mask, s0, NS > 0)
    _st(p1, idx, mask, s1, NS > 1)
    _st(p2, idx, mask, s2, NS > 2)
    _st(p3, idx, mask, s3, NS > 3)


@triton.jit
def _load_fields(ptr, M, idx, mask, NS: tl.constexpr, zero):
    """Fields k = 0..NS-1 of a ``[NS, M]`` block starting at ``ptr``."""
    s0 = _ld(ptr, idx, mask, NS > 0, zero)
    s1 = _ld(ptr + M, idx, mask, NS > 1, zero)
    s2 = _ld(ptr + 2 * M, idx, mask, NS > 2, zero)
    s3 = _ld(ptr + 3 * M, idx, mask, NS > 3, zero)
    return s0, s1, s2, s3


@triton.jit
def _store_fields(ptr, M, idx, mask, s0, s1, s2, s3, NS: tl.constexpr):
    _st(ptr, idx, mask, s0, NS > 0)
    _st(ptr + M, idx, mask, s1, NS > 1)
    _st(ptr + 2 * M, idx, mask, s2, NS > 2)
    _st(ptr + 3 * M, idx, mask, s3, NS > 3)


@triton.jit
def _add_traj(p0, p1, p2, p3, idx, mask, g0, g1, g2, g3, GTRAJ: tl.constexpr):
    """Add the trajectory's gradient at this step to the post-step state gradient
    (GTRAJ: bit k set when field k has one)."""
    if (GTRAJ & 1) != 0:
        g0 += tl.load(p0 + idx, mask=mask, other=0.0)
    if (GTRAJ & 2) != 0:
        g1 += tl.load(p1 + idx, mask=mask, other=0.0)
    if (GTRAJ & 4) != 0:
        g2 += tl.load(p2 + idx, mask=mask, other=0.0)
    if (GTRAJ & 8) != 0:
        g3 += tl.load(p3 + idx, mask=mask, other=0.0)
    return g0, g1, g2, g3


@triton.jit
def _load_params(prm, M64, offs, mask, NP: tl.constexpr, zero):
    p0 = _ld(prm, offs, mask, NP > 0, zero)
    p1 = _ld(prm, offs + 1 * M64, mask, NP > 1, zero)
    p2 = _ld(prm, offs + 2 * M64, mask, NP > 2, zero)
    p3 = _ld(prm, offs + 3 * M64, mask, NP > 3, zero)
    p4 = _ld(prm, offs + 4 * M64, mask, NP > 4, zero)
    p5 = _ld(prm, offs + 5 * M64, mask, NP > 5, zero)
    p6 = _ld(prm, offs + 6 * M64, mask, NP > 6, zero)
    p7 = _ld(prm, offs + 7 * M64, mask, NP > 7, zero)
    return p0, p1, p2, p3, p4, p5, p6, p7


@triton.jit
def scan_forward(
    x_ptr, i0, i1, i2, i3, prm_ptr, cst_ptr, out_ptr, q0, q1, q2, q3, ckpt_ptr,
    f0, f1, f2, f3, T, M, K,
    NEURON: tl.constexpr, NS: tl.constexpr, NP: tl.constexpr, RESET: tl.constexpr,
    CUR_FIRST: tl.constexpr, NORMALIZE: tl.constexpr, ASN_SPIKES: tl.constexpr,
    POST: tl.constexpr, CKPT: tl.constexpr, BLOCK: tl.constexpr,
):
    """out[t] for every t; with POST the state after every step (q0..q3, [T, M]
    each); with CKPT the state before every K-th step (ckpt, [ceil(T/K), NS, M]);
    the final state (f0..f3)."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    M64 = tl.cast(M, tl.int64)
    zero = tl.zeros([BLOCK], dtype=x_ptr.dtype.element_ty)
    gain = tl.load(cst_ptr)
    p0, p1, p2, p3, p4, p5, p6, p7 = _load_params(prm_ptr, M64, offs, mask, NP, zero)
    s0, s1, s2, s3 = _load_state(i0, i1, i2, i3, offs, mask, NS, zero)
    for t in range(T):
        row = tl.cast(t, tl.int64) * M64 + offs
        if CKPT:
            if t % K == 0:
                crow = tl.cast(t // K, tl.int64) * (NS * M64) + offs
                _store_fields(ckpt_ptr, M64, crow, mask, s0, s1, s2, s3, NS)
        x = tl.load(x_ptr + row, mask=mask, other=0.0)
        out, s0, s1, s2, s3 = _step(p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, x, gain,
                                    NEURON, RESET, CUR_FIRST, NORMALIZE, ASN_SPIKES)
        tl.store(out_ptr + row, out, mask=mask)
        if POST:
            _store_state(q0, q1, q2, q3, row, mask, s0, s1, s2, s3, NS)
    _store_state(f0, f1, f2, f3, offs, mask, s0, s1, s2, s3, NS)


@triton.jit
def scan_backward(
    x_ptr, i0, i1, i2, i3, q0, q1, q2, q3, ckpt_ptr, scr_ptr, prm_ptr, cst_ptr,
    go_ptr, gf0, gf1, gf2, gf3, gt0, gt1, gt2, gt3, gx_ptr, gi_ptr, gp_ptr,
    T, M, K, NSEG,
    NEURON: tl.constexpr, NS: tl.constexpr, NP: tl.constexpr, NG: tl.constexpr,
    RESET: tl.constexpr, DETACH: tl.constexpr, CUR_FIRST: tl.constexpr,
    NORMALIZE: tl.constexpr, ASN_SPIKES: tl.constexpr, SURR: tl.constexpr,
    SAVED_ALL: tl.constexpr, HAS_GOUT: tl.constexpr, GFIN: tl.constexpr, GTRAJ: tl.constexpr,
    HAS_GX: tl.constexpr, BLOCK: tl.constexpr,
):
    """Backward through time, recomputing every step from the state before it.

    SAVED_ALL: that state is the initial state (t = 0) or the trajectory q[t-1].
    Otherwise segments of K steps, last first: the segment's states are recomputed
    from its checkpoint into the scratch ``[K, NS, M]`` (bit for bit the forward's),
    then walked in reverse. GFIN / GTRAJ are bit masks of the state fields whose
    final-state / trajectory gradients are given (gf*, gt*). Writes d/dx (with
    HAS_GX), d/d(initial state) ``[NS, M]`` and the per-element parameter gradients
    summed over time ``[NG, M]``.
    """
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    M64 = tl.cast(M, tl.int64)
    zero = tl.zeros([BLOCK], dtype=x_ptr.dtype.element_ty)
    gain = tl.load(cst_ptr)
    c = tl.load(cst_ptr + 1)
    p0, p1, p2, p3, p4, p5, p6, p7 = _load_params(prm_ptr, M64, offs, mask, NP, zero)
    g0 = _ld(gf0, offs, mask, (GFIN & 1) != 0, zero)
    g1 = _ld(gf1, offs, mask, (GFIN & 2) != 0, zero)
    g2 = _ld(gf2, offs, mask, (GFIN & 4) != 0, zero)
    g3 = _ld(gf3, offs, mask, (GFIN & 8) != 0, zero)
    a0 = zero
    a1 = zero
    a2 = zero
    if SAVED_ALL:
        for tt in range(T):
            t = T - 1 - tt
            row = tl.cast(t, tl.int64) * M64 + offs
            g0, g1, g2, g3 = _add_traj(gt0, gt1, gt2, gt3, row, mask, g0, g1, g2, g3, GTRAJ)
            if t == 0:
                s0, s1, s2, s3 = _load_state(i0, i1, i2, i3, offs, mask, NS, zero)
            else:
                s0, s1, s2, s3 = _load_state(q0, q1, q2, q3, row - M64, mask, NS, zero)
            x = tl.load(x_ptr + row, mask=mask, other=0.0)
            go = _ld(go_ptr, row, mask, HAS_GOUT, zero)
            gx, g0, g1, g2, g3, d0, d1, d2 = _vjp(
                p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, x, go, g0, g1, g2, g3, gain, c,
                NEURON, RESET, DETACH, CUR_FIRST, NORMALIZE, ASN_SPIKES, SURR)
            a0 += d0
            a1 += d1
            a2 += d2
            _st(gx_ptr, row, mask, gx, HAS_GX)
    else:
        for cc in range(NSEG):
            seg = NSEG - 1 - cc
            t0 = seg * K
            n = tl.minimum(T - t0, K)
            crow = tl.cast(seg, tl.int64) * (NS * M64) + offs
            s0, s1, s2, s3 = _load_fields(ckpt_ptr, M64, crow, mask, NS, zero)
            _store_fields(scr_ptr, M64, offs, mask, s0, s1, s2, s3, NS)
            for j in range(n - 1):  # recompute the segment's states
                row = tl.cast(t0 + j, tl.int64) * M64 + offs
                x = tl.load(x_ptr + row, mask=mask, other=0.0)
                out, s0, s1, s2, s3 = _step(p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, x,
                                            gain, NEURON, RESET, CUR_FIRST, NORMALIZE, ASN_SPIKES)
                srow = tl.cast(j + 1, tl.int64) * (NS * M64) + offs
                _store_fields(scr_ptr, M64, srow, mask, s0, s1, s2, s3, NS)
            for jj in range(n):
                j = n - 1 - jj
                row = tl.cast(t0 + j, tl.int64) * M64 + offs
                g0, g1, g2, g3 = _add_traj(gt0, gt1, gt2, gt3, row, mask, g0, g1, g2, g3,
                                           GTRAJ)
                srow = tl.cast(j, tl.int64) * (NS * M64) + offs
                s0, s1, s2, s3 = _load_fields(scr_ptr, M64, srow, mask, NS, zero)
                x = tl.load(x_ptr + row, mask=mask, other=0.0)
                go = _ld(go_ptr, row, mask, HAS_GOUT, zero)
                gx, g0, g1, g2, g3, d0, d1, d2 = _vjp(
                    p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, x, go, g0, g1, g2, g3, gain,
                    c, NEURON, RESET, DETACH, CUR_FIRST, NORMALIZE, ASN_SPIKES, SURR)
                a0 += d0
                a1 += d1
                a2 += d2
                _st(gx_ptr, row, mask, gx, HAS_GX)
    _store_fields(gi_ptr, M64, offs, mask, g0, g1, g2, g3, NS)
    _st(gp_ptr, offs, mask, a0, NG > 0)
    _st(gp_ptr, offs + M64, mask, a1, NG > 1)
    _st(gp_ptr, offs + 2 * M64, mask, a2, NG > 2)
