r"""Exact closed form of the mean-field DMFT for linear φ (mean_field.md §6), any depth, marched in t.

**Reduction.** For linear φ the backward field g^ℓ = γ0N ∂f/∂h^ℓ does not depend on the data point, so in N-space
ℓ the operator ℬ^ℓ has identical rows for every μ and the (TM)×(TM) formulas of §6 collapse (by the
push-through identity (I − 𝒜ℬ)⁻¹𝒜 = 𝒜(I − ℬ𝒜)⁻¹) onto T×T and (TM)×T objects. With c = ηγ0/P, SL = [s < t]
and the Δ-contractions X^Δ_{(μt),s} = Σ_ν X_{(μt),(νs)}Δ_ν(s), Δ·X = Σ_μ Δ_μ(t) X_{(μt),·}:

    ā^ℓ = σ² ā^{ℓ−1} v^{ℓ−1} + c SL∘Φ^{ℓ−1,Δ}                (TM×T: 𝒜^{ℓ−1} summed over ν; ā^0-term absent)
    β^ℓ = σ² v^{ℓ+1} β^{ℓ+1} + c SL∘G^{ℓ+1}                  (T×T: ℬ^ℓ_{t,(νs)} = β^ℓ(t,s)Δ_ν(s); β^{L+1} = 0)
    D^ℓ = Δ·ā^ℓ,   v^ℓ = (I − β^ℓ D^ℓ)⁻¹                      (v^ℓ = 𝕍 of §6, T×T)
    G^ℓ = v^ℓ (Σ_r^ℓ + σ² β^ℓ Q^{ℓ−1} β^{ℓT}) v^{ℓT},   Σ_r^ℓ = σ²G^{ℓ+1} (ℓ < L), σ_w²𝟙𝟙ᵀ (ℓ = L)
    Φ^{ℓ,Δ} = σ²Φ^{ℓ−1,Δ} + σ² W^ℓ Q^{ℓ−1} + σ² Φ^{ℓ−1,Δ}(D^ℓv^ℓβ^ℓ)ᵀ + ā^ℓ G^ℓ D^{ℓT},   W^ℓ = ā^ℓv^ℓβ^ℓ
    Q^ℓ = Δ·Φ^{ℓ,Δ}                                           (T×T; Φ^{0,Δ} = K^xΔ, Q^0 = ΔK^xΔᵀ)
    f_μ(t) = γ0⁻¹ [ σ² (v^Lβ^L Φ^{L−1,Δ ᵀ})_{t,(μt)} + (G^L ā^{Lᵀ})_{t,(μt)} ]        (exact output, §4)

and the full objects, when asked for, follow in one pass: Φ^ℓ = σ²Φ^{ℓ−1} + σ²(W^ℓΦ^{ℓ−1,Δᵀ} + transpose) +
ā^ℓG^ℓā^{ℓT}, A^ℓ = σ²(𝒜^{ℓ−1} + W^ℓ Δ·𝒜^{ℓ−1}), B^{ℓ} = σ²v^{ℓ+1}β^{ℓ+1} ⊗ Δ, G^ℓ broadcast over points.

**March.** Every object is causal, so stage t computes the row t of each (forward ℓ = 1..L: ā, W, Φ^Δ(t, s<t),
Φ^ℓ(t,t); backward ℓ = L..1: β, v, G(t, s≤t), and f(t)), then Δ(t), then the Δ(t)-dependent column t (D, Φ^Δ(·,t),
Q). Each stage costs O(L T² M); the whole solve O(L T³ M), with O(L T² M) memory. No global iteration is used;
:func:`global_residual` applies the dense map once to the result as a check (≈ 1e-15 for a correct march).

**Divergence.** When the training loss exceeds ``divergence_threshold`` × its initial value (or is not finite)
the solve records the step, freezes the dynamics (Δ := 0 afterwards, so no overflow) and reports NaN outputs
after that step.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._jax import require_x64
from ._types import MeanFieldSolution

__all__ = ["LinearState", "march_linear", "solve_linear", "solution_from_state", "global_residual", "full_two_time"]


class LinearState(NamedTuple):
    """Reduced order parameters of the closed form (module docstring); layer axes: ℓ = 1..L unless noted."""

    delta: Float[Array, "T M"]  # Δ used by the dynamics (0 on test points and after divergence)
    f: Float[Array, "T M"]  # output (exact or tangent form, as requested)
    f_exact: Float[Array, "T M"]
    abar: Float[Array, "L T M T"]
    W: Float[Array, "L T M T"]
    v: Float[Array, "L T T"]
    beta: Float[Array, "L T T"]
    D: Float[Array, "L T T"]
    DvB: Float[Array, "L T T"]
    S: Float[Array, "L T T"]
    G: Float[Array, "Lp1 T T"]  # G^1..G^{L+1}
    PhiD: Float[Array, "Lp1 T M T"]  # ℓ = 0..L
    Q: Float[Array, "Lp1 T T"]  # ℓ = 0..L
    Phi_diag: Float[Array, "Lp1 T M M"]  # ℓ = 0..L
    ntk: Float[Array, "T M M"]
    loss0: Float[Array, ""]
    diverged: Bool[Array, ""]
    divergence_step: Int[Array, ""]


def _init_state(kx: Array, depth: int, T: int) -> LinearState:
    M = kx.shape[0]
    z = lambda *s: jnp.zeros(s)  # noqa: E731
    G = z(depth + 1, T, T).at[depth].set(1.0)
    pdiag = z(depth + 1, T, M, M).at[0].set(jnp.broadcast_to(kx, (T, M, M)))
    return LinearState(
        z(T, M), z(T, M), z(T, M), z(depth, T, M, T), z(depth, T, M, T), z(depth, T, T), z(depth, T, T),
        z(depth, T, T), z(depth, T, T), z(depth, T, T), G, z(depth + 1, T, M, T), z(depth + 1, T, T), pdiag,
        z(T, M, M), jnp.asarray(0.0), jnp.asarray(False), jnp.asarray(-1),
    )


def _put(x: Array, index: tuple, value: Array) -> Array:
    """``x.at[index].set(value)`` as one in-place ``dynamic_update_slice``. ``index`` holds an integer (static or
    traced) or ``slice(None)`` per leading axis. JAX lowers a scatter with a traced index (and a strided one, such as
    a column) to a select over the whole array plus a copy of it; inside the time loop that copied the whole Φ^Δ
    state (L + 1 copies of T²M floats) at every step."""
    index = tuple(index) + (slice(None),) * (x.ndim - len(index))
    starts = [jnp.asarray(0 if isinstance(i, slice) else i, dtype=jnp.int32) for i in index]
    shape = tuple(x.shape[a] if isinstance(i, slice) else 1 for a, i in enumerate(index))
    return jax.lax.dynamic_update_slice(x, jnp.broadcast_to(value, tuple(
        x.shape[a] for a, i in enumerate(index) if isinstance(i, slice))).reshape(shape).astype(x.dtype), starts)


def _sym_set(x: Array, layer: int, t: Array, row: Array) -> Array:
    """Set row t and column t of layer ``layer`` of a stack of symmetric T×T arrays."""
    return _put(_put(x, (layer, t), row), (layer, slice(None), t), row)


def _stage(
    t: Array, st: LinearState, kx: Array, y: Array, hp: tuple[Array, ...], *, depth: int, n_train: int,
    tangent: bool,
) -> LinearState:
    lr, gamma0, sigma, sigma_w, threshold = hp
    L, T, M = depth, st.delta.shape[0], kx.shape[0]
    s2, sw2 = sigma**2, sigma_w**2
    c = lr * gamma0 / n_train
    idx = jnp.arange(T)
    lt = (idx < t).astype(float)  # s < t
    le = (idx <= t).astype(float)  # s ≤ t
    abar, W, v, beta, D, DvB, S, G, Q = st.abar, st.W, st.v, st.beta, st.D, st.DvB, st.S, st.G, st.Q
    # The big arrays (Φ^Δ, Φ^ℓ(t,t), ā, W: O(L T² M) floats) are only read in this step and written once at its end,
    # with the new rows and columns kept as locals: a write followed by a read of the same array makes XLA copy the
    # whole array every step. Row t of ā, W and of Φ^Δ (ℓ ≥ 1), and column t of Φ^Δ, are zero before step t.
    PhiD0, Pd0, abar0, W0 = st.PhiD, st.Phi_diag, st.abar, st.W
    at_t = (idx == t).astype(float)[:, None]  # e_t ⊗ x = at_t * x: a (T, M) slab that is x at row t

    # forward, ℓ = 1..L: row t of ā, W, Φ^Δ(t, s<t) and Φ^ℓ(t,t)
    ac_prev = jnp.zeros((M, T))
    phid_rows = [PhiD0[0, t]]  # Φ^{ℓ,Δ}(t, ·), ℓ = 0..L
    pd_rows = [Pd0[0, t]]  # Φ^ℓ(t, t)
    a_rows, w_rows = [], []
    for i in range(L):  # layer ℓ = i + 1
        pd_prev = phid_rows[i]  # Φ^{ℓ−1,Δ}(t, ·)
        a_t = ac_prev + c * pd_prev * lt[None, :]
        av = a_t @ v[i]
        w_t = av @ beta[i]
        ag = a_t @ G[i]
        row = s2 * pd_prev + s2 * (w_t @ Q[i]) + s2 * (pd_prev @ DvB[i].T) + ag @ D[i].T
        phid_rows.append(row * lt[None, :])
        cross = w_t @ pd_prev.T
        pd_rows.append(s2 * pd_rows[i] + s2 * (cross + cross.T) + ag @ a_t.T)
        a_rows.append(a_t)
        w_rows.append(w_t)
        ac_prev = s2 * av

    # backward, ℓ = L..1: row t of β, v, S and G (rows and columns ≤ t)
    f_exact = jnp.zeros(M)
    v_next = None
    for i in reversed(range(L)):
        b_row = c * lt * G[i + 1, t]
        if i < L - 1:
            b_row = b_row + s2 * (v_next @ beta[i + 1])
        beta = _put(beta, (i, t), b_row)
        v_row = (idx == t).astype(float) + (b_row @ D[i]) @ v[i]
        v = _put(v, (i, t), v_row)
        sig_r = sw2 * jnp.ones(T) if i == L - 1 else s2 * G[i + 1, t]
        s_row = (sig_r + s2 * (b_row @ Q[i]) @ beta[i].T) * le
        S = _sym_set(S, i, t, s_row)
        g_row = ((v_row @ S[i]) @ v[i].T) * le
        G = _sym_set(G, i, t, g_row)
        if i == L - 1:
            f_exact = (s2 * phid_rows[L - 1] @ (v_row @ beta[i]) + a_rows[i] @ g_row) / gamma0
        v_next = v_row

    ntk_t = sum(G[i, t, t] * pd_rows[i] for i in range(L + 1))
    if tangent:
        prev = jnp.maximum(t - 1, 0)
        f_t = jnp.where(t > 0, st.f[prev] + (lr / n_train) * st.ntk[prev] @ st.delta[prev], 0.0)
    else:
        f_t = f_exact
    train = (jnp.arange(M) < n_train).astype(float)
    delta_t = (y - f_t) * train
    loss = 0.5 * jnp.sum(delta_t**2) / n_train
    loss0 = jnp.where(t == 0, loss, st.loss0)
    bad = ~(loss <= threshold * jnp.maximum(loss0, jnp.finfo(float).tiny))
    diverged = st.diverged | bad
    div_step = jnp.where(bad & ~st.diverged, t, st.divergence_step)
    delta_t = jnp.where(diverged, 0.0, delta_t)
    delta = _put(st.delta, (t,), delta_t)

    # Δ(t)-dependent completion: row t of D, DvB; column t of Φ^Δ and Q (rows ≤ t)
    kd = kx @ delta_t
    cols = [jnp.broadcast_to(kd, (T, M))]  # Φ^{ℓ,Δ}(·, t), ℓ = 0..L
    Q = _sym_set(Q, 0, t, delta @ kd)
    for i in range(L):
        d_row = delta_t @ a_rows[i]
        D = _put(D, (i, t), d_row)
        dvb = (d_row @ v[i]) @ beta[i]
        DvB = _put(DvB, (i, t), dvb)
        # Φ^Δ_i @ dvb, W_i @ q and ā_i @ g over the arrays as they stand after rows t and columns t are written
        phid_dvb = PhiD0[i] @ dvb + cols[i] * dvb[t] + (at_t * (phid_rows[i] @ dvb) if i > 0 else 0.0)
        q_t = Q[i, t]
        w_q = W0[i] @ q_t + at_t * (w_rows[i] @ q_t)
        g = G[i] @ d_row
        a_g = abar0[i] @ g + at_t * (a_rows[i] @ g)
        col = (s2 * cols[i] + s2 * w_q + s2 * phid_dvb + a_g) * le[:, None]
        cols.append(col)
        Q = _sym_set(Q, i + 1, t, jnp.sum(delta * col, axis=1))

    # write rows and columns t only after every read of the big arrays: the last column depends on all of them,
    # and a zero computed from it orders the writes (rows first: a column owns the entry (t, t))
    dep = 0.0 * cols[L][0, 0]
    PhiD, Pd, abar, W = PhiD0, Pd0, abar0, W0
    for i in range(L):
        PhiD = _put(PhiD, (i + 1, t), phid_rows[i + 1] + dep)
        Pd = _put(Pd, (i + 1, t), pd_rows[i + 1])
        abar = _put(abar, (i, t), a_rows[i] + dep)
        W = _put(W, (i, t), w_rows[i] + dep)
    for i in range(L + 1):
        PhiD = _put(PhiD, (i, slice(None), slice(None), t), cols[i])

    return LinearState(
        delta, _put(st.f, (t,), f_t), _put(st.f_exact, (t,), f_exact), abar, W, v, beta, D, DvB, S, G, PhiD, Q, Pd,
        _put(st.ntk, (t,), ntk_t), loss0, diverged, div_step,
    )


@partial(jax.jit, static_argnames=("depth", "steps", "n_train", "tangent"))
def _march(
    kx: Array, y: Array, hp: tuple[Array, ...], *, depth: int, steps: int, n_train: int, tangent: bool
) -> LinearState:
    stage = partial(_stage, kx=kx, y=y, hp=hp, depth=depth, n_train=n_train, tangent=tangent)
    return jax.lax.fori_loop(0, steps, stage, _init_state(kx, depth, steps))


def _hyper(lr: ArrayLike, gamma0: ArrayLike, sigma: ArrayLike, sigma_w: ArrayLike, threshold: ArrayLike) -> tuple:
    return tuple(jnp.asarray(x, dtype=float) for x in (lr, gamma0, sigma, sigma_w, threshold))


def _padded_targets(y: Array, m: int) -> Array:
    y = jnp.asarray(y, dtype=float)
    return jnp.concatenate([y, jnp.zeros(m - y.shape[0])])


def march_linear(
    kx: Float[ArrayLike, "M M"], y: Float[ArrayLike, " P"], *, depth: int, gamma0: ArrayLike, sigma: ArrayLike,
    sigma_w: ArrayLike, lr: ArrayLike, steps: int, output: str = "exact", divergence_threshold: ArrayLike = 1e6,
) -> LinearState:
    """The reduced closed-form state (module docstring) on M = P + Q points (training points first)."""
    require_x64("march_linear")
    if output not in ("exact", "tangent"):
        raise ValueError(f"output = {output!r}: must be 'exact' or 'tangent'")
    kx = jnp.asarray(kx, dtype=float)
    y = jnp.asarray(y, dtype=float)
    return _march(
        kx, _padded_targets(y, kx.shape[0]), _hyper(lr, gamma0, sigma, sigma_w, divergence_threshold),
        depth=depth, steps=steps, n_train=y.shape[0], tangent=output == "tangent",
    )


def global_residual(
    st: LinearState, kx: Float[Array, "M M"], y: Float[Array, " P"], *, depth: int, gamma0: ArrayLike,
    sigma: ArrayLike, sigma_w: ArrayLike, lr: ArrayLike, output: str = "exact",
) -> Float[Array, ""]:
    """max over objects of max|F(X) − X| / max|X| for one dense application F of the closed-form map.

    Every formula of the module docstring is re-evaluated from the marched state, with full T×T products and
    explicit inverses. Zero up to rounding for a correct march; NaN after a divergence (the dynamics were frozen).
    """
    kx, y = jnp.asarray(kx, dtype=float), jnp.asarray(y, dtype=float)
    L = depth
    T, M = st.delta.shape
    P = y.shape[0]
    s2, sw2, c = sigma**2, sigma_w**2, lr * gamma0 / P
    sl = jnp.tril(jnp.ones((T, T)), -1)
    eye = jnp.eye(T)
    delta = st.delta
    errs = []

    def rel(new: Array, old: Array) -> Array:
        return jnp.max(jnp.abs(new - old)) / jnp.maximum(jnp.max(jnp.abs(old)), 1e-300)

    ac_prev = jnp.zeros((T, M, T))
    for i in range(L):
        a = ac_prev + c * st.PhiD[i] * sl[:, None, :]
        errs.append(rel(a, st.abar[i]))
        errs.append(rel(jnp.einsum("tm,tms->ts", delta, st.abar[i]), st.D[i]))
        v = jnp.linalg.inv(eye - st.beta[i] @ st.D[i])
        errs.append(rel(v, st.v[i]))
        b = c * sl * st.G[i + 1] + (s2 * st.v[i + 1] @ st.beta[i + 1] if i < L - 1 else 0.0)
        errs.append(rel(b, st.beta[i]))
        sig_r = sw2 * jnp.ones((T, T)) if i == L - 1 else s2 * st.G[i + 1]
        g = st.v[i] @ (sig_r + s2 * st.beta[i] @ st.Q[i] @ st.beta[i].T) @ st.v[i].T
        errs.append(rel(g, st.G[i]))
        w = st.abar[i] @ st.v[i] @ st.beta[i]
        pd = (s2 * st.PhiD[i] + s2 * w @ st.Q[i] + s2 * st.PhiD[i] @ (st.D[i] @ st.v[i] @ st.beta[i]).T
              + st.abar[i] @ st.G[i] @ st.D[i].T)
        errs.append(rel(pd, st.PhiD[i + 1]))
        errs.append(rel(jnp.einsum("tm,tms->ts", delta, st.PhiD[i + 1]), st.Q[i + 1]))
        ac_prev = s2 * st.abar[i] @ st.v[i]
    vb = st.v[L - 1] @ st.beta[L - 1]
    f = (s2 * jnp.einsum("ts,tms->tm", vb, st.PhiD[L - 1]) + jnp.einsum("ts,tms->tm", st.G[L - 1], st.abar[L - 1]))
    f = f / gamma0
    if output == "tangent":
        f = jnp.concatenate([jnp.zeros((1, M)), jnp.cumsum((lr / P) * jnp.einsum("tmn,tn->tm", st.ntk, delta), 0)])
        f = f[:T]
    errs.append(rel(f, st.f))
    train = (jnp.arange(M) < P).astype(float)
    errs.append(rel((_padded_targets(y, M) - f) * train, delta))
    res = jnp.max(jnp.stack(errs))
    return jnp.where(st.diverged, jnp.nan, res)


def full_two_time(
    st: LinearState, kx: Float[Array, "M M"], *, depth: int, gamma0: ArrayLike, sigma: ArrayLike, lr: ArrayLike,
    n_train: int,
) -> tuple[Array, Array, Array, Array]:
    """Φ^ℓ (ℓ = 0..L), G^ℓ (ℓ = 1..L+1), A^ℓ (ℓ = 0..L−1) and B^ℓ (ℓ = 1..L) as (·, T, M, T, M) arrays.

    Cost O(L T³ M²) and O(L T² M²) memory: only for moderate T·M.
    """
    L = depth
    T, M = st.delta.shape
    s2, c = sigma**2, lr * gamma0 / n_train
    sl = jnp.tril(jnp.ones((T, T)), -1)
    delta = st.delta
    phis = [jnp.broadcast_to(kx[None, :, None, :], (T, M, T, M))]
    for i in range(L):
        x = jnp.einsum("tmr,snr->tmsn", st.W[i], st.PhiD[i])
        ag = jnp.einsum("tmr,rq->tmq", st.abar[i], st.G[i])
        phis.append(s2 * phis[-1] + s2 * (x + x.transpose(2, 3, 0, 1)) + jnp.einsum("tmq,snq->tmsn", ag, st.abar[i]))
    gs = jnp.broadcast_to(st.G[:, :, None, :, None], (L + 1, T, M, T, M))
    a_full = [jnp.zeros((T, M, T, M))]
    for i in range(L - 1):  # A^{i+1} from layer ℓ = i + 1
        calA = a_full[-1] + c * phis[i] * (sl[:, None, :, None] * delta[None, None, :, :])
        dA = jnp.einsum("sm,smtn->stn", delta, calA)
        a_full.append(s2 * (calA + jnp.einsum("tmr,rsn->tmsn", st.W[i], dA)))
    bhat = [s2 * st.v[i + 1] @ st.beta[i + 1] for i in range(L - 1)] + [jnp.zeros((T, T))]
    b_full = jnp.stack([jnp.broadcast_to((bh[:, :, None] * delta[None, :, :])[:, None], (T, M, T, M)) for bh in bhat])
    return jnp.stack(phis), gs, jnp.stack(a_full), b_full


def solution_from_state(
    st: LinearState, kx: Float[Array, "M M"], y: Float[Array, " P"], *, depth: int, gamma0: ArrayLike,
    sigma: ArrayLike, sigma_w: ArrayLike, lr: ArrayLike, output: str = "exact",
    y_test: Float[ArrayLike, " Q"] | None = None, tol: ArrayLike = 1e-8, two_time: bool = True,
) -> MeanFieldSolution:
    """Package a marched state as a :class:`MeanFieldSolution` (NaN outputs after a divergence)."""
    kx = jnp.asarray(kx, dtype=float)
    y = jnp.asarray(y, dtype=float)
    P = y.shape[0]
    T = st.delta.shape[0]
    res = global_residual(st, kx, y, depth=depth, gamma0=gamma0, sigma=sigma, sigma_w=sigma_w, lr=lr,
                          output=output)
    bad = st.diverged & (jnp.arange(T) > st.divergence_step)
    f = jnp.where(bad[:, None], jnp.nan, st.f)
    train_loss = 0.5 * jnp.mean((y[None, :] - f[:, :P]) ** 2, axis=1)
    if y_test is not None and jnp.size(y_test) > 0:
        yt = jnp.asarray(y_test, dtype=float)
        test_loss = 0.5 * jnp.mean((yt[None, :] - f[:, P : P + yt.shape[0]]) ** 2, axis=1)
    else:
        test_loss = jnp.full(T, jnp.nan)
    if two_time:
        phi, g, a, b = full_two_time(st, kx, depth=depth, gamma0=gamma0, sigma=sigma, lr=lr, n_train=P)
    else:
        phi = g = a = b = None
    return MeanFieldSolution(
        f=f, train_loss=train_loss, test_loss=test_loss, Phi=phi, G=g, A=a, B=b, ntk=st.ntk, residual=res,
        converged=res <= tol, diverged=st.diverged, divergence_step=st.divergence_step, mc_error=jnp.zeros(T),
        Phi_diag=st.Phi_diag,
    )


def solve_linear(
    kx: Float[ArrayLike, "M M"], y: Float[ArrayLike, " P"], *, depth: int, gamma0: ArrayLike, sigma: ArrayLike,
    sigma_w: ArrayLike, lr: ArrayLike, steps: int, output: str = "exact", y_test: Float[ArrayLike, " Q"] | None = None,
    divergence_threshold: ArrayLike = 1e6, tol: ArrayLike = 1e-8, two_time: bool = True,
) -> MeanFieldSolution:
    """Closed-form mean-field DMFT for linear φ on M = P + Q points (training first; Q = M − P test points).

    ``kx`` is the input Gram of all M points, ``y`` the P training targets, ``y_test`` the first test targets
    (for the test loss; NaN without them), γ0 the effective output scale. ``output`` selects the exact
    discrete-time output or the tangent-kernel update (§4). ``two_time=False`` skips the O(L T³ M²) full
    two-time objects (Phi, G, A, B are then None). ``residual`` is :func:`global_residual`; ``converged`` =
    residual ≤ tol.
    """
    require_x64("solve_linear")
    hyper = dict(depth=depth, gamma0=gamma0, sigma=sigma, sigma_w=sigma_w, lr=lr)
    st = march_linear(kx, y, steps=steps, output=output, divergence_threshold=divergence_threshold, **hyper)
    return solution_from_state(st, kx, y, output=output, y_test=y_test, tol=tol, two_time=two_time, **hyper)
