"""The permutohedral lattice: fast high-dimensional Gaussian filtering, vectorised in numpy.

Adams, Baek & Davis, "Fast High-Dimensional Filtering Using the Permutohedral Lattice",
Eurographics 2010; the construction (elevation, rounding to the nearest remainder-0 point,
barycentric weights, the ``[1/2, 1, 1/2]`` blur along the ``d + 1`` lattice directions and the
``1 / (1 + 2^-d)`` scale) follows Krähenbühl's ``permutohedral.cpp`` (densecrf), which the dense
CRF paper (Krähenbühl & Koltun, NIPS 2011) uses. Lattice points are hashed with ``np.unique``
over integer codes of their keys, and splat/slice are sparse matrices, so the per-filter cost is
a few vectorised passes over the ``N (d + 1)`` point-vertex pairs.

:class:`PermutohedralLattice` approximates ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` for
features ``f`` already divided by their kernel widths; :meth:`~PermutohedralLattice.self_weight`
is the weight the approximation gives to ``j = i``, computed exactly on the lattice, so a filter
that excludes the point itself (mean-field message passing) subtracts it.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def _elevate(features: np.ndarray) -> np.ndarray:
    """Points ``[N, d]`` projected onto the hyperplane ``H_d`` of ``R^(d+1)`` (``E f``, Adams p. 5)."""
    n, d = features.shape
    inv_std = np.sqrt(2.0 / 3.0) * (d + 1)
    scale = inv_std / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2.0))
    cf = features * scale
    tail = np.zeros((n, d + 1))
    tail[:, :d] = np.cumsum(cf[:, ::-1], axis=1)[:, ::-1]  # tail[:, j] = sum_{k >= j} cf[:, k]
    elevated = tail.copy()
    elevated[:, 1:] -= np.arange(1, d + 1) * cf
    return elevated


def _enclosing_simplex(elevated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest remainder-0 point ``[N, d+1]`` (int), the rank of each coordinate and the
    barycentric weights ``[N, d+1]`` of the simplex vertices (remainders 0..d)."""
    n, d1 = elevated.shape
    d = d1 - 1
    v = elevated / d1
    up, down = np.ceil(v) * d1, np.floor(v) * d1
    rem0 = np.where(up - elevated < elevated - down, up, down)
    total = np.rint(rem0.sum(axis=1) / d1).astype(np.int64)
    diff = elevated - rem0
    rank = np.zeros((n, d1), dtype=np.int64)  # position in descending order, ties: lower index first
    for i in range(d1):
        for j in range(d1):
            if j != i:
                rank[:, i] += diff[:, j] > diff[:, i] if j > i else diff[:, j] >= diff[:, i]
    rank += total[:, None]
    low, high = rank < 0, rank > d
    rank[low] += d1
    rem0[low] += d1
    rank[high] -= d1
    rem0[high] -= d1
    bary = np.zeros((n, d + 2))
    rows = np.arange(n)
    w = (elevated - rem0) / d1
    for i in range(d1):
        bary[rows, d - rank[:, i]] += w[:, i]
        bary[rows, d - rank[:, i] + 1] -= w[:, i]
    bary[:, 0] += 1.0 + bary[:, d + 1]
    return rem0.astype(np.int64), rank, bary[:, :d1]


class _Codes:
    """Integer codes of lattice keys (their first ``d`` coordinates).

    A mixed-radix number when the keys' bounding box fits in 62 bits; otherwise (many feature
    dimensions with a wide range, e.g. several image channels with outliers) the index of the key
    in the sorted table of the lattice's keys, found by exact row matching (slower, never wrong).
    """

    #: largest number of mixed-radix codes (the product of the box's extents)
    LIMIT = 2.0**62

    def __init__(self, keys: np.ndarray) -> None:
        self.low = keys.min(axis=0) - 1 - keys.shape[1]  # room for the neighbours' +-d steps
        extent = keys.max(axis=0) + 2 + keys.shape[1] - self.low
        self.extent = extent
        self.table: np.ndarray | None = None
        if float(np.prod(extent.astype(np.float64))) >= self.LIMIT:
            self.table = np.unique(keys, axis=0)  # the lattice points, sorted rows
            return
        self.stride = np.concatenate([np.cumprod(extent[::-1])[::-1][1:], [1]]).astype(np.int64)

    def encode(self, keys: np.ndarray) -> np.ndarray:
        """Codes of keys ``[..., d]``; keys that are not lattice points may get -1."""
        if self.table is not None:
            return self._lookup(keys)
        shifted = keys - self.low
        inside = np.all((shifted >= 0) & (shifted < self.extent), axis=-1)
        return np.where(inside, shifted @ self.stride, -1)

    def _lookup(self, keys: np.ndarray) -> np.ndarray:
        """Row index of each key in :attr:`table`, -1 where it is not there."""
        table = self.table
        assert table is not None
        flat = keys.reshape(-1, keys.shape[-1])
        _, inverse = np.unique(np.concatenate([table, flat]), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        index_of = np.full(int(inverse.max()) + 1, -1, dtype=np.int64)
        index_of[inverse[: len(table)]] = np.arange(len(table))
        return index_of[inverse[len(table) :]].reshape(keys.shape[:-1])


class PermutohedralLattice:
    """A lattice over ``N`` points with features ``[N, d]`` (each divided by its kernel width).

    Args:
        features: ``[N, d]`` float; the filter approximates ``exp(-|f_i - f_j|^2 / 2)``.

    Raises:
        ValueError: no points, no feature dimension, or non-finite features.
    """

    def __init__(self, features: np.ndarray) -> None:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0 or not np.all(np.isfinite(f)):
            raise ValueError(f"features must be a finite [N, d] array with N, d >= 1, got {f.shape}")
        n, d = f.shape
        self.n_points, self.dim = n, d
        rem0, self._rank, bary = _enclosing_simplex(_elevate(f))
        canonical = np.array([[r if k <= d - r else r - (d + 1) for k in range(d + 1)] for r in range(d + 1)])
        keys = rem0[:, None, :d] + canonical[:, self._rank[:, :d]].transpose(1, 0, 2)  # [N, d+1, d]
        self._codes = _Codes(keys.reshape(-1, d))
        codes = self._codes.encode(keys)
        unique, first, vertex = np.unique(codes.ravel(), return_index=True, return_inverse=True)
        self.n_vertices = m = unique.size
        self._vertex = vertex.reshape(n, d + 1).astype(np.int64)
        self._weights = bary
        self._splat = sparse.csr_matrix(
            (bary.ravel(), (self._vertex.ravel(), np.repeat(np.arange(n), d + 1))), shape=(m, n)
        )
        self._slice = self._splat.T.tocsr()
        lattice_keys = keys.reshape(-1, d)[first]
        self._neighbours = [self._find(lattice_keys, unique, j) for j in range(d + 1)]
        self.alpha = 1.0 / (1.0 + 2.0**-d)

    def _find(self, keys: np.ndarray, unique: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of each vertex's neighbours ``key +- delta_j`` along direction ``j`` (``M``: none)."""
        d = self.dim
        step = -np.ones(d, dtype=np.int64)
        if j < d:
            step[j] = d
        out = []
        for sign in (1, -1):
            code = self._codes.encode(keys + sign * step)
            pos = np.clip(np.searchsorted(unique, code), 0, unique.size - 1)
            out.append(np.where(unique[pos] == code, pos, unique.size))
        return out[0], out[1]

    def blur(self, values: np.ndarray) -> np.ndarray:
        """Values ``[M, V]`` at the vertices, blurred ``[1/2, 1, 1/2]`` along each direction in turn."""
        padded = np.concatenate([values, np.zeros((1, values.shape[1]), values.dtype)])
        for n1, n2 in self._neighbours:
            padded[:-1] = padded[:-1] + 0.5 * (padded[n1] + padded[n2])
        return padded[:-1]

    def filter(self, values: np.ndarray) -> np.ndarray:
        """``[N, V] -> [N, V]``: splat, blur, slice, scaled by ``1 / (1 + 2^-d)``."""
        return self.alpha * (self._slice @ self.blur(self._splat @ values))

    def self_weight(self) -> np.ndarray:
        """``[N]``: the weight :meth:`filter` gives each point's own value (the diagonal of the
        filter matrix), summed exactly over the blur paths that exist in this lattice.

        Vertex ``r`` of a point's simplex is vertex 0 minus the ``delta_i`` of its ``r`` top-ranked
        coordinates, so vertex ``k2`` is reached from vertex ``k`` by the steps ``s`` in
        ``{-1, 0, 1}^(d+1)`` of exactly two blur paths (three when ``k = k2``), each weighted
        ``(1/2)^|s|`` when every lattice point along it exists.
        """
        d1 = self.dim + 1
        m = self.n_vertices
        # tables[j][s + 1, v]: the vertex reached from v by step s along direction j (m: none)
        tables = [
            np.stack([np.append(n2, m), np.arange(m + 1), np.append(n1, m)]) for n1, n2 in self._neighbours
        ]
        out = (self._weights**2).sum(axis=1)  # the zero path of each k = k2, weight 1
        for k in range(d1):
            for k2 in range(d1):
                lo, hi = sorted((k, k2))
                moved = (self._rank >= d1 - hi) & (self._rank < d1 - lo)
                sign = -1 if k < k2 else 1
                if k == k2:
                    paths = [(np.ones_like(self._rank), d1), (-np.ones_like(self._rank), d1)]
                else:
                    paths = [(np.where(moved, sign, 0), hi - lo), (np.where(moved, 0, -sign), d1 - hi + lo)]
                total = np.zeros(self.n_points)
                for steps, length in paths:
                    idx = self._vertex[:, k]
                    for j in range(d1 - 1, -1, -1):
                        idx = tables[j][steps[:, j] + 1, idx]
                    total += (idx == self._vertex[:, k2]) * 0.5**length
                out += self._weights[:, k] * self._weights[:, k2] * total
        return self.alpha * out
