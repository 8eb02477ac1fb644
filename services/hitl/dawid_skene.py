"""Dawid & Skene (1979) in numpy: each inspector's confusion matrix by EM, and the weighted vote.

Pure functions, no database: ``dawid_skene`` estimates confusions from (item, worker, class) answers
(gold items fixed), ``gold_confusion`` builds one from gold accuracy, ``item_posterior`` is the vote
that weighs each inspector's answer by their reliability. ``services.hitl.consensus`` stores and uses them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.core.errors import InvalidInput


@dataclass
class DawidSkene:
    """Result of ``dawid_skene``: per-worker confusion matrices (rows true class, columns answered),
    class priors, per-item posteriors over the classes and the number of EM iterations run."""

    confusions: dict[Hashable, np.ndarray] = field(default_factory=dict)
    priors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    posteriors: dict[Hashable, np.ndarray] = field(default_factory=dict)
    iterations: int = 0


def dawid_skene(
    answers: Sequence[tuple[Hashable, Hashable, int]],
    *,
    n_classes: int,
    gold: Mapping[Hashable, int] | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 1.0,
    pooling: float = 40.0,
) -> DawidSkene:
    """EM over (item, worker, class index) answers, as in Dawid & Skene (1979).

    Returns per-worker confusion matrices (rows true class, columns answered), class priors and item
    posteriors. Items in ``gold`` keep a one-hot posterior on their known class throughout. Stops when
    no posterior moves by more than ``tol``, or after ``max_iter`` iterations.

    Two departures from the plain algorithm keep it sane on the small overlaps a review team produces
    (a few hundred photos, three inspectors each), where the plain maximum-likelihood fit is nearly flat
    and drifts toward letting two weak inspectors who happen to agree explain each other:

    * initial posteriors are not the raw vote but a vote weighted by each worker's accuracy as
      estimated from pairwise agreement (method of moments: under uniform errors
      P(j and k agree) = 1/K + K/(K-1) * (a_j - 1/K)(a_k - 1/K); gold counts as a perfect worker);
    * the M-step's Dirichlet prior on each confusion row is centred on that worker's own symmetric
      ("one-coin") matrix, with ``pooling`` pseudo-answers per row: rows with few answers follow the
      worker's overall accuracy, rows with many follow the data. ``smoothing`` is the Laplace count
      for the class priors and for each worker's overall accuracy (correct + s) / (total + 2 s).

    Raises InvalidInput for a class index outside [0, n_classes).
    """
    K = int(n_classes)
    gold = dict(gold or {})
    if not answers and not gold:
        return DawidSkene(priors=np.full(K, 1.0 / K))
    encoded = _encode(answers, gold=gold, n_classes=K)
    if not len(encoded.classes):  # gold items only: nothing to learn about anyone
        return _gold_only(encoded, n_classes=K, smoothing=smoothing)
    grouped = _group_answers(encoded, n_classes=K)
    confusions, priors, posteriors = _initial_estimate(encoded, grouped=grouped, n_classes=K)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        confusions, priors = _m_step(posteriors, grouped=grouped, n_workers=encoded.n_workers,
                                     smoothing=smoothing, pooling=pooling)
        new_posteriors = _e_step(encoded, grouped=grouped, confusions=confusions, priors=priors)
        converged = _largest_change(posteriors, new_posteriors=new_posteriors) < tol
        posteriors = new_posteriors
        if converged:
            break
    return DawidSkene(
        confusions={w: confusions[j] for j, w in enumerate(encoded.worker_keys)},
        priors=priors,
        posteriors=_posteriors_by_item(encoded, posteriors=posteriors),
        iterations=iterations,
    )


@dataclass(frozen=True)
class _Encoded:
    """Answers and gold as index arrays: items (answered, then gold-only) and workers in first-seen order."""

    item_keys: list[Hashable]
    worker_keys: list[Hashable]
    items: np.ndarray  # item index per answer
    workers: np.ndarray  # worker index per answer
    classes: np.ndarray  # answered class per answer
    gold_rows: np.ndarray  # item index per gold item
    gold_classes: np.ndarray  # known class per gold item
    gold_onehot: np.ndarray  # gold items x K, one-hot on the known class

    @property
    def n_items(self) -> int:
        return len(self.item_keys)

    @property
    def n_workers(self) -> int:
        return len(self.worker_keys)


@dataclass(frozen=True)
class _Grouped:
    """Answers sorted by item (the E-step sums per item) and grouped by (worker, answered class) cell
    (the M-step sums per cell)."""

    items: np.ndarray  # item index per answer, ascending
    workers: np.ndarray  # worker index per answer, same order
    classes: np.ndarray  # answered class per answer, same order
    flat: np.ndarray  # worker * K + answered class per answer, same order
    item_groups: tuple[np.ndarray, np.ndarray]  # (items, index of each item's first answer)
    cells: np.ndarray  # the distinct flat cells, ascending
    cell_starts: np.ndarray  # index of each cell's first answer in cell order
    items_by_cell: np.ndarray  # item index per answer in cell order


def _encode(
    answers: Sequence[tuple[Hashable, Hashable, int]], *, gold: Mapping[Hashable, int], n_classes: int
) -> _Encoded:
    """Index the items and workers of ``answers`` and ``gold``.

    Raises InvalidInput for an answered or gold class index outside [0, n_classes).
    """
    K = n_classes
    items_raw, workers_raw, classes_raw = zip(*answers, strict=True) if answers else ((), (), ())
    item_keys = list(dict.fromkeys([*items_raw, *gold]))
    worker_keys = list(dict.fromkeys(workers_raw))
    item_index = {k: i for i, k in enumerate(item_keys)}
    worker_index = {k: i for i, k in enumerate(worker_keys)}
    ii = np.fromiter((item_index[x] for x in items_raw), dtype=np.int64, count=len(items_raw))
    ww = np.fromiter((worker_index[x] for x in workers_raw), dtype=np.int64, count=len(workers_raw))
    cc = np.asarray(classes_raw, dtype=np.int64).reshape(-1)
    gold_rows = np.fromiter((item_index[k] for k in gold), dtype=np.int64, count=len(gold))
    gold_cls = np.asarray(list(gold.values()), dtype=np.int64).reshape(-1)
    for arr, what in ((cc, "class"), (gold_cls, "gold class")):
        if arr.size and (arr.min() < 0 or arr.max() >= K):
            raise InvalidInput(f"{what} indices must be between 0 and {K - 1}")
    gold_onehot = np.zeros((len(gold_rows), K))
    gold_onehot[np.arange(len(gold_rows)), gold_cls] = 1.0
    return _Encoded(
        item_keys=item_keys,
        worker_keys=worker_keys,
        items=ii,
        workers=ww,
        classes=cc,
        gold_rows=gold_rows,
        gold_classes=gold_cls,
        gold_onehot=gold_onehot,
    )


def _group_answers(encoded: _Encoded, *, n_classes: int) -> _Grouped:
    """Sort the answers by item (stable) and group them by (worker, answered class) cell. Raises nothing."""
    by_item = np.argsort(encoded.items, kind="stable")
    ii, ww, cc = encoded.items[by_item], encoded.workers[by_item], encoded.classes[by_item]
    flat = ww * n_classes + cc
    item_groups = np.unique(ii, return_index=True)
    by_cell = np.argsort(flat, kind="stable")
    cells, cell_starts = np.unique(flat[by_cell], return_index=True)
    return _Grouped(
        items=ii,
        workers=ww,
        classes=cc,
        flat=flat,
        item_groups=item_groups,
        cells=cells,
        cell_starts=cell_starts,
        items_by_cell=ii[by_cell],
    )


def _gold_only(encoded: _Encoded, *, n_classes: int, smoothing: float) -> DawidSkene:
    """The result when only gold items are known: their one-hot posteriors (zeros for any other item),
    priors from them, no confusions. Raises nothing."""
    posteriors = np.zeros((encoded.n_items, n_classes))
    posteriors[encoded.gold_rows] = encoded.gold_onehot
    return DawidSkene(
        priors=_class_priors(posteriors, smoothing=smoothing),
        posteriors=_posteriors_by_item(encoded, posteriors=posteriors),
    )


def _initial_estimate(
    encoded: _Encoded, *, grouped: _Grouped, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initialisation: (confusions, priors, posteriors) with each worker's symmetric matrix at their
    pairwise-agreement accuracy, uniform priors, and one E-step over those. Raises nothing."""
    K = n_classes
    accuracy = _agreement_accuracy(
        grouped.items, grouped.workers, grouped.classes, encoded.gold_rows, encoded.gold_classes,
        n_workers=encoded.n_workers, n_classes=K,
    )
    confusions = _symmetric(accuracy, K)
    priors = np.full(K, 1.0 / K)
    return confusions, priors, _e_step(encoded, grouped=grouped, confusions=confusions, priors=priors)


def _e_step(encoded: _Encoded, *, grouped: _Grouped, confusions: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Items x K posteriors given the confusions and priors; gold items stay one-hot. Raises nothing."""
    posteriors = _posteriors(grouped.item_groups, grouped.flat, np.log(confusions), priors, n_items=encoded.n_items)
    posteriors[encoded.gold_rows] = encoded.gold_onehot
    return posteriors


def _m_step(
    posteriors: np.ndarray, *, grouped: _Grouped, n_workers: int, smoothing: float, pooling: float
) -> tuple[np.ndarray, np.ndarray]:
    """(confusions, priors) from expected counts, each answer weighted by its item's posterior; each
    confusion row gets ``pooling`` pseudo-answers of the worker's smoothed one-coin matrix. Raises nothing."""
    W, K = n_workers, posteriors.shape[1]
    diag = np.arange(K)
    by_answered = np.zeros((W * K, K))  # row (worker, answered class), column true class
    by_answered[grouped.cells] = np.add.reduceat(posteriors[grouped.items_by_cell], grouped.cell_starts, axis=0)
    counts = by_answered.reshape(W, K, K).transpose(0, 2, 1)
    per_worker = counts.sum(axis=(1, 2))
    accuracy = (counts[:, diag, diag].sum(axis=1) + smoothing) / (per_worker + 2 * smoothing)
    counts += pooling * _symmetric(accuracy, K)
    confusions = counts / counts.sum(axis=2, keepdims=True)
    return confusions, _class_priors(posteriors, smoothing=smoothing)


def _class_priors(posteriors: np.ndarray, *, smoothing: float) -> np.ndarray:
    """Laplace-smoothed class priors from items x K posteriors. Raises nothing."""
    N, K = posteriors.shape
    return (posteriors.sum(axis=0) + smoothing) / (N + K * smoothing)


def _largest_change(posteriors: np.ndarray, *, new_posteriors: np.ndarray) -> float:
    """Convergence check: the largest move of any posterior (0.0 with no items). Raises nothing."""
    return float(np.abs(new_posteriors - posteriors).max()) if len(posteriors) else 0.0


def _posteriors_by_item(encoded: _Encoded, *, posteriors: np.ndarray) -> dict[Hashable, np.ndarray]:
    """{item key: its posterior row}, in item index order. Raises nothing."""
    return {k: posteriors[i] for i, k in enumerate(encoded.item_keys)}


def _symmetric(accuracy: np.ndarray, K: int) -> np.ndarray:
    """W x K x K: each worker's accuracy on the diagonal, the rest shared evenly off it."""
    acc = np.clip(np.asarray(accuracy, dtype=float), 1e-6, 1 - 1e-6)
    m = np.repeat(((1.0 - acc) / max(K - 1, 1))[:, None, None], K, axis=1).repeat(K, axis=2)
    m[:, np.arange(K), np.arange(K)] = acc[:, None]
    return m


def _posteriors(
    item_groups: tuple[np.ndarray, np.ndarray], flat: np.ndarray, log_pi: np.ndarray, priors: np.ndarray, *, n_items: int
) -> np.ndarray:
    """E-step: p(item = k) proportional to prior_k * prod over its answers of pi_worker[k, answered].
    ``flat`` is worker * K + answered class per answer, answers sorted by item; ``item_groups`` the
    (items, first answer index) pairs of that order."""
    K = len(priors)
    per_answer = log_pi.transpose(0, 2, 1).reshape(-1, K)[flat]  # answers x true class
    log_t = np.tile(np.log(priors), (n_items, 1))
    items, starts = item_groups
    log_t[items] += np.add.reduceat(per_answer, starts, axis=0)
    log_t -= log_t.max(axis=1, keepdims=True)
    t = np.exp(log_t)
    return t / t.sum(axis=1, keepdims=True)


def _agreement_accuracy(
    ii: np.ndarray,
    ww: np.ndarray,
    cc: np.ndarray,
    gold_rows: np.ndarray,
    gold_cls: np.ndarray,
    *,
    n_workers: int,
    n_classes: int,
    max_pairs_per_answer: int = 50,
) -> np.ndarray:
    """Each worker's accuracy from how often they agree with others on shared items (and with gold):
    fits x_j x_k to the chance-corrected agreement of every pair (x = accuracy - 1/K) by alternating
    least squares. Workers who share nothing get 0.75. Raises nothing."""
    K, W = n_classes, n_workers
    G = W  # gold is one more "worker", known to be right
    i_all = np.concatenate([ii, gold_rows])
    w_all = np.concatenate([ww, np.full(len(gold_rows), G)])
    c_all = np.concatenate([cc, gold_cls])
    order = np.lexsort((w_all, i_all))
    si, sw, sc = i_all[order], w_all[order], c_all[order]
    size = (W + 1) * (W + 1)
    n = np.zeros(size)
    agree = np.zeros(size)
    for off in range(1, min(len(si), max_pairs_per_answer + 1)):
        same = si[off:] == si[:-off]
        if not same.any():
            break
        p, q = sw[:-off][same], sw[off:][same]
        hit = (sc[:-off][same] == sc[off:][same]).astype(float)
        for a, b in ((p, q), (q, p)):
            n += np.bincount(a * (W + 1) + b, minlength=size)
            agree += np.bincount(a * (W + 1) + b, weights=hit, minlength=size)
    n, agree = n.reshape(W + 1, W + 1), agree.reshape(W + 1, W + 1)
    np.fill_diagonal(n, 0.0)  # a worker answering the same item twice says nothing about accuracy
    d = np.where(n > 0, (agree / np.maximum(n, 1.0) - 1.0 / K) * (K - 1) / K, 0.0)
    top = 1.0 - 1.0 / K - 1e-3
    x = np.full(W + 1, 0.75 - 1.0 / K)
    x[G] = top
    for _ in range(100):
        den = (n * x[None, :] ** 2).sum(axis=1)
        new = np.where(den > 0, (n * d) @ x / np.where(den > 0, den, 1.0), x)
        new = np.clip(new, 0.01, top)
        new[G] = top
        if np.abs(new - x).max() < 1e-6:
            x = new
            break
        x = new
    return 1.0 / K + x[:W]


def symmetric_confusion(accuracy: float, n_classes: int) -> np.ndarray:
    """K x K matrix with ``accuracy`` on the diagonal and the rest shared evenly off it."""
    K = int(n_classes)
    off = (1.0 - accuracy) / (K - 1) if K > 1 else 0.0
    m = np.full((K, K), off)
    np.fill_diagonal(m, accuracy)
    return m


def gold_confusion(*, correct: int, total: int, n_classes: int) -> np.ndarray:
    """Symmetric confusion from smoothed gold accuracy (correct + 1) / (total + 2)."""
    if total < 0 or not 0 <= correct <= max(total, 0):
        raise InvalidInput(f"gold counts must satisfy 0 <= correct <= total, got {correct}/{total}")
    return symmetric_confusion((correct + 1.0) / (total + 2.0), n_classes)


def item_posterior(
    labels: Sequence[tuple[str, int]],
    *,
    confusions: Mapping[str, np.ndarray],
    priors: np.ndarray,
    default: np.ndarray,
) -> np.ndarray:
    """Weighted vote over one item's (worker, class index) answers:
    p(k) proportional to prior_k * prod_j pi_j[k, label_j], computed in log space.
    Workers missing from ``confusions`` use ``default``."""
    log_p = np.log(np.clip(np.asarray(priors, dtype=float), 1e-300, None))
    for worker, cls in labels:
        pi = confusions.get(worker)
        pi = default if pi is None else pi
        log_p = log_p + np.log(np.clip(np.asarray(pi, dtype=float)[:, int(cls)], 1e-300, None))
    log_p -= log_p.max()
    p = np.exp(log_p)
    return p / p.sum()
