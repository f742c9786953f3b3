"""Baseline for benchmarks/diagonal_linear.py: the same Monte Carlo scheme as
:func:`dmft.families.diagonal_linear.causal_solve` (form "uv", exact tangents), written the straightforward way
in NumPy: a Python loop over time steps, arrays vectorised over samples and tangent directions, and the
tangent history stored densely as X[r, i, s] = ∂β_i(r)/∂ρ(s) (T × S × T). Same inputs, same result to
round-off."""

from __future__ import annotations

import numpy as np


def causal_solve_numpy(
    lr: float,
    a: float,
    alpha: float,
    noise: float,
    weight_decay: float,
    beta_star: np.ndarray,
    z: np.ndarray,
    jitter: float = 1e-7,
) -> dict[str, np.ndarray]:
    """One causal pass (diagonal_linear.md §5, scheme B). Returns C_β̃, R, C_Δ (T × T) and the paths β (T ×
    S)."""
    T, S = z.shape
    u, v = np.full(S, a), np.zeros(S)
    du, dv = np.zeros((S, T)), np.zeros((S, T))
    bt = np.zeros((T, S))
    X = np.zeros((T, S, T))
    C, R, H, CD = (np.zeros((T, T)) for _ in range(4))
    Q = np.zeros((T, S + 1))
    decay = 1.0 - lr * weight_decay
    for t in range(T):
        btil = u * v - beta_star
        bt[t] = btil
        c_row = bt @ btil / S
        C[t], C[:, t] = c_row, c_row
        dbeta = du * v[:, None] + u[:, None] * dv
        X[t] = dbeta
        r_row = dbeta.mean(axis=0)
        r_row[t:] = 0.0
        R[t] = r_row
        h = -(r_row @ H)
        h[t] = 1.0
        H[t] = h
        cd_row = (h @ (noise**2 + C)) @ H.T
        CD[t], CD[:, t] = cd_row, cd_row
        hb = h @ bt
        g = np.sqrt(alpha) * np.concatenate([[noise * h.sum()], hb / np.sqrt(S)])
        c1 = Q @ g
        g1 = g - c1 @ Q
        c2 = Q @ g1
        g2 = g1 - c2 @ Q
        nrm = np.sqrt(g2 @ g2)
        l_row = c1 + c2
        if nrm > jitter * np.sqrt(g @ g):
            l_row[t] = nrm
            Q[t] = g2 / nrm
        qhat = l_row @ z / alpha - hb
        dq = -np.tensordot(h, X, axes=1)
        dq[:, t] += 1.0 / alpha
        u, v, du, dv = (
            decay * u + lr * v * qhat,
            decay * v + lr * u * qhat,
            decay * du + lr * (dv * qhat[:, None] + v[:, None] * dq),
            decay * dv + lr * (du * qhat[:, None] + u[:, None] * dq),
        )
    return {"C": C, "R": R, "CD": CD, "beta": bt + beta_star[None, :]}


def picard_solve_numpy(
    lr: float,
    a: float,
    alpha: float,
    noise: float,
    weight_decay: float,
    beta_star: np.ndarray,
    z: np.ndarray,
    damping: float = 0.5,
    tol: float = 1e-4,
    max_iter: int = 500,
    jitter: float = 1e-7,
) -> dict[str, np.ndarray]:
    """Scheme A as first written in diagonal_linear.md §5: damped Picard iteration from C_β̃ = ρ*𝟙𝟙ᵀ, R = 0,
    mixing θ = ``damping``, until max|ΔC_β̃| < ``tol``. Each iteration runs the samples over the whole horizon
    with the current (H, 𝐋) held fixed, carrying the same exact tangents (dense history) as the causal
    pass."""
    T, S = z.shape
    decay = 1.0 - lr * weight_decay
    B = np.broadcast_to(-beta_star[None, :], (T, S)).copy()
    R = np.zeros((T, T))
    for it in range(1, max_iter + 1):
        H = np.linalg.inv(np.eye(T) + R)
        G = np.sqrt(alpha) * np.concatenate([noise * H.sum(1, keepdims=True), H @ B / np.sqrt(S)], axis=1)
        L, Q = np.zeros((T, T)), np.zeros((T, S + 1))
        for t in range(T):  # causal LQ factor of G, as in the causal pass
            g = G[t]
            c1 = Q @ g
            g1 = g - c1 @ Q
            c2 = Q @ g1
            g2 = g1 - c2 @ Q
            nrm = np.sqrt(g2 @ g2)
            L[t] = c1 + c2
            if nrm > jitter * np.sqrt(g @ g):
                L[t, t] = nrm
                Q[t] = g2 / nrm
        rho = L @ z
        u, v = np.full(S, a), np.zeros(S)
        du, dv = np.zeros((S, T)), np.zeros((S, T))
        bt, X = np.zeros((T, S)), np.zeros((T, S, T))
        for t in range(T):
            bt[t] = u * v - beta_star
            X[t] = du * v[:, None] + u[:, None] * dv
            qhat = rho[t] / alpha - H[t] @ bt
            dq = -np.tensordot(H[t], X, axes=1)
            dq[:, t] += 1.0 / alpha
            u, v, du, dv = (
                decay * u + lr * v * qhat,
                decay * v + lr * u * qhat,
                decay * du + lr * (dv * qhat[:, None] + v[:, None] * dq),
                decay * dv + lr * (du * qhat[:, None] + u[:, None] * dq),
            )
        R_new = np.tril(X.mean(axis=1), -1)
        delta = np.abs(bt @ bt.T - B @ B.T).max() / S
        B = (1 - damping) * B + damping * bt
        R = (1 - damping) * R + damping * R_new
        if delta < tol:
            break
    C = B @ B.T / S
    H = np.linalg.inv(np.eye(T) + R)
    return {"C": C, "R": R, "CD": H @ (noise**2 + C) @ H.T, "iterations": it}
