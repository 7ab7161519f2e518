"""GAN attribution metrics of the RepMix protocol (Bui et al., ECCV 2022, Attribution88).

Labels are source ids: 0 = real, 1..K-1 = the generators. Predictions are
the argmax source ids of a classifier (or cluster ids of an embedding).

* `detection_accuracy`: real/fake accuracy, every nonzero id counting as fake
  (RepMix test.py: mean((pred > 0) == (label > 0))).
* `attribution_accuracy`: exact source accuracy over all classes, real included.
* `nmi`: normalized mutual information with the arithmetic-mean normalizer
  and natural logarithms, equal to scikit-learn's
  `normalized_mutual_info_score` (RepMix's `compute_nmi`), limit cases
  included: two single-cluster (or two empty) labelings score 1, any other
  pair with zero mutual information scores 0.
* `confusion` and `purity`: the confusion matrix (rows = truth) and cluster
  purity (RepMix's `compute_purity`).
* `fd_ratio`: the Fréchet distance ratio of an embedding (RepMix's
  `fdratio`, after Yu et al., ICCV 2019): the mean intra-class distance
  over the mean inter-class distance; lower = classes better separated.
* `semantic_split`: the accuracies on the seen semantics (dlabel < nseen,
  those present in training) and on the unseen ones (RepMix's
  `analyse_semantic`), which is where attribution generalises or not.

Numpy only, so any task can score without scikit-learn or scipy.
"""

from __future__ import annotations

import numpy as np


def _labels(values, name: str) -> np.ndarray:
  """`values` as a 1-D integer array; an empty input counts as integer."""
  array = np.asarray(values).ravel()
  if array.size == 0:
    return array.astype(np.int64)
  if not np.issubdtype(array.dtype, np.integer):
    raise ValueError(f"{name} must be integers, got {array.dtype}")
  return array


def _pair(labels, preds) -> tuple[np.ndarray, np.ndarray]:
  labels, preds = _labels(labels, "labels"), _labels(preds, "preds")
  if labels.shape != preds.shape:
    raise ValueError(f"{labels.size} labels but {preds.size} preds")
  return labels, preds


def _mean(hits: np.ndarray) -> float:
  """The mean of a boolean array; a mean over no sample is undefined, hence an error."""
  if hits.size == 0:
    raise ValueError("no samples to score")
  return float(np.mean(hits))


def detection_accuracy(labels, preds) -> float:
  """Real/fake accuracy: a prediction is right when it is real (0) exactly when the label is."""
  labels, preds = _pair(labels, preds)
  return _mean((preds > 0) == (labels > 0))


def attribution_accuracy(labels, preds) -> float:
  """Fraction of samples attributed to their exact source, real (0) being one of the sources."""
  labels, preds = _pair(labels, preds)
  return _mean(preds == labels)


# ---------------------------------------------------------------- clusters ---


def _contingency(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
  """[classes, clusters] counts over the distinct values present in each labeling."""
  classes, class_index = np.unique(labels, return_inverse=True)
  clusters, cluster_index = np.unique(preds, return_inverse=True)
  table = np.zeros((classes.size, clusters.size), np.int64)
  np.add.at(table, (class_index, cluster_index), 1)
  return table


def _entropy(counts: np.ndarray) -> float:
  """Natural-log entropy of the distribution with these (positive) counts."""
  total = counts.sum()
  return float(-np.sum(counts / total * (np.log(counts) - np.log(total))))


def nmi(labels, preds) -> float:
  """Normalized mutual information MI / mean(H(labels), H(preds)), natural logarithms.

  The limit cases are scikit-learn's: both labelings a single cluster (or
  both empty) is a perfect match, 1.0; otherwise zero mutual information
  (which includes one labeling being a single cluster) scores 0.0, so the
  normalizer is never zero where it is used.
  """
  labels, preds = _pair(labels, preds)
  table = _contingency(labels, preds)
  if table.shape[0] == table.shape[1] <= 1:
    return 1.0
  if min(table.shape) == 1:
    return 0.0
  total = float(labels.size)
  rows, cols = np.nonzero(table)
  joint = table[rows, cols].astype(np.float64)
  class_counts, cluster_counts = table.sum(axis=1), table.sum(axis=0)
  log_ratio = (
      np.log(joint)
      + np.log(total)
      - np.log(class_counts[rows].astype(np.float64))
      - np.log(cluster_counts[cols].astype(np.float64))
  )
  mi = max(float(np.sum(joint / total * log_ratio)), 0.0)
  if mi == 0.0:
    return 0.0
  normalizer = (_entropy(class_counts) + _entropy(cluster_counts)) / 2
  return mi / normalizer


def confusion(labels, preds, num_classes: int) -> np.ndarray:
  """[num_classes, num_classes] int64 counts, row = true class, column = predicted class.

  Raises:
    ValueError: if a label or prediction is outside 0..num_classes-1, which
      would otherwise be dropped silently or wrap around.
  """
  labels, preds = _pair(labels, preds)
  for name, values in (("labels", labels), ("preds", preds)):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(f"{name} must lie in 0..{num_classes - 1}")
  flat = labels.astype(np.int64) * num_classes + preds
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def purity(labels, preds) -> float:
  """Cluster purity: each predicted cluster counts its most frequent true class, over N."""
  labels, preds = _pair(labels, preds)
  if labels.size == 0:
    raise ValueError("no samples to score")
  return float(_contingency(labels, preds).max(axis=0).sum() / labels.size)


# ------------------------------------------------------------- embeddings ---


def gaussian(features) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], covariance [D, D]) of [N, D] features, the unbiased (N - 1) covariance."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"need [N >= 2, D] features to fit a Gaussian, got {features.shape}")
  return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) between two Gaussians.

  Tr((S1 S2)^{1/2}) is the sum of the square roots of the eigenvalues of
  S1 S2, which avoids scipy's matrix square root: for covariances (symmetric
  positive semi-definite) S1 S2 is similar to S1^{1/2} S2 S1^{1/2}, so its
  eigenvalues are real and non-negative, and the principal square root
  scipy.linalg.sqrtm would take has these square roots as its eigenvalues.
  Rounding can leave small imaginary parts or negative values; only the real
  parts count, clipped at zero.
  """
  mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
  cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
  eigenvalues = np.linalg.eigvals(cov1 @ cov2)
  trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues.real, 0.0, None)))
  squared_gap = np.sum((mean1 - mean2) ** 2)
  return float(squared_gap + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def _intra_distance(features: np.ndarray, rng: np.random.Generator) -> float:
  """Fréchet distance between the two halves of one random permutation of a class."""
  order = rng.permutation(len(features))
  half = len(features) // 2
  return frechet_distance(*gaussian(features[order[:half]]), *gaussian(features[order[half:]]))


def fd_ratio(embeddings, labels, rng, splits: int = 1) -> float:
  """Mean intra-class over mean inter-class Fréchet distance of an embedding; lower is better.

  The intra-class distance of a class is that between two random halves of
  it (averaged over `splits` random halvings, RepMix takes one); the
  inter-class one is taken between every pair of classes. A ratio near 1
  means the classes are no further apart than a class from itself.

  RepMix's `fdratio` has two slips not copied here: its halves are the
  first and second half of the class in input order (the permutation it
  draws goes unused), and it divides the sum of the K(K-1)/2 inter-class
  distances by K(K-1), so its ratio is twice this one.

  Args:
    embeddings: [N, D] features.
    labels: N integer class ids; every class needs at least 4 samples, so
      that each half has a covariance.
    rng: a numpy Generator, or a seed for one.
    splits: random halvings averaged per class.

  Raises:
    ValueError: for fewer than two classes or a class with fewer than 4 samples.
  """
  embeddings = np.asarray(embeddings, np.float64)
  labels = _labels(labels, "labels")
  if embeddings.ndim != 2 or embeddings.shape[0] != labels.size:
    raise ValueError(f"embeddings {embeddings.shape} do not match {labels.size} labels")
  rng = np.random.default_rng(rng)
  classes, counts = np.unique(labels, return_counts=True)
  if classes.size < 2:
    raise ValueError("the FD ratio needs at least two classes")
  if counts.min() < 4:
    raise ValueError(f"class {classes[np.argmin(counts)]} has {counts.min()} samples, need 4")
  members = [embeddings[labels == c] for c in classes]
  intra = [np.mean([_intra_distance(m, rng) for _ in range(splits)]) for m in members]
  fits = [gaussian(m) for m in members]
  inter = [
      frechet_distance(*fits[i], *fits[j])
      for i in range(len(fits))
      for j in range(i + 1, len(fits))
  ]
  return float(np.mean(intra) / np.mean(inter))


# ---------------------------------------------------------------- summary ---


def semantic_split(labels, preds, semantics, nseen: int) -> dict[str, float]:
  """Accuracies overall and on seen (semantic id < nseen) and unseen semantics, plus NMI.

  Returns:
    {"det_acc", "attr_acc", "nmi", "seen/det_acc", "seen/attr_acc",
     "unseen/det_acc", "unseen/attr_acc"}; a part with no sample (a test set
    of seen semantics only, say) is left out rather than scored NaN.
  """
  labels, preds = _pair(labels, preds)
  semantics = _labels(semantics, "semantics")
  if semantics.shape != labels.shape:
    raise ValueError(f"{labels.size} labels but {semantics.size} semantics")
  scores = _overall(labels, preds)
  seen = semantics < nseen
  for part, chosen in (("seen", seen), ("unseen", ~seen)):
    if chosen.any():
      scores[f"{part}/det_acc"] = detection_accuracy(labels[chosen], preds[chosen])
      scores[f"{part}/attr_acc"] = attribution_accuracy(labels[chosen], preds[chosen])
  return scores


def _overall(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
  return {
      "det_acc": detection_accuracy(labels, preds),
      "attr_acc": attribution_accuracy(labels, preds),
      "nmi": nmi(labels, preds),
  }


def summary(labels, preds, semantics=None, nseen: int | None = None) -> dict[str, float]:
  """det_acc, attr_acc and nmi, with the seen/unseen split when semantics are given."""
  if semantics is None:
    return _overall(*_pair(labels, preds))
  if nseen is None:
    raise ValueError("semantics given without nseen, the number of seen semantics")
  return semantic_split(labels, preds, semantics, nseen)
