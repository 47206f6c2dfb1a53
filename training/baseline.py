"""The trivial baseline every shipped classifier is compared with.

Per-finding L2-regularised logistic regression on 32×32 thumbnails
(standardised pixels), fitted by full-batch gradient descent in numpy. If a deep
network cannot clearly beat this, it has learned nothing beyond global
brightness and layout.
"""

from __future__ import annotations

import cv2
import numpy as np


def thumbnails(images: np.ndarray, size: int = 32) -> np.ndarray:
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                     for im in images]).reshape(len(images), -1).astype(np.float64) / 255.0


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, steps: int = 300,
                 lr: float = 0.5) -> np.ndarray:
    """Class-balanced L2 logistic regression; ``x`` carries a trailing column of ones (bias)."""
    w = np.zeros(x.shape[1])
    pos = max(float(y.mean()), 1e-3)
    weights = np.where(y > 0, 0.5 / pos, 0.5 / max(1 - pos, 1e-3))  # balanced classes
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ ((p - y) * weights) / len(y) + l2 * np.r_[w[:-1], 0.0]
        w -= lr * grad
    return w


def thumbnail_logistic_regression(train_images: np.ndarray, labels: np.ndarray, known: np.ndarray,
                                  test_images: np.ndarray, *, l2: float = 1e-2, steps: int = 300,
                                  lr: float = 0.5) -> np.ndarray:
    """Probabilities (N_test, L); labels unknown in training are left out per finding."""
    xtr, xte = thumbnails(train_images), thumbnails(test_images)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr = np.c_[(xtr - mean) / std, np.ones(len(xtr))]
    xte = np.c_[(xte - mean) / std, np.ones(len(xte))]
    out = np.full((len(xte), labels.shape[1]), 0.5)
    for j in range(labels.shape[1]):
        rows = known[:, j] > 0
        y = labels[rows, j]
        if y.size == 0 or y.min() == y.max():
            continue
        w = fit_logistic(xtr[rows], y, l2=l2, steps=steps, lr=lr)
        out[:, j] = 1.0 / (1.0 + np.exp(-(xte @ w)))
    return out
