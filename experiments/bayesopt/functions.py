"""The benchmark functions (to be minimised), with their boxes and known global minima."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_HARTMANN3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_HARTMANN3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_HARTMANN6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                         [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_HARTMANN6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                                [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def branin(x: np.ndarray) -> float:
    x1, x2 = x
    b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return float((x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10)


def _hartmann(x: np.ndarray, a: np.ndarray, p: np.ndarray) -> float:
    return float(-np.sum(_HARTMANN_ALPHA * np.exp(-np.sum(a * (np.asarray(x) - p) ** 2, axis=1))))


def hartmann3(x: np.ndarray) -> float:
    return _hartmann(x, _HARTMANN3_A, _HARTMANN3_P)


def hartmann6(x: np.ndarray) -> float:
    return _hartmann(x, _HARTMANN6_A, _HARTMANN6_P)


def ackley(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    d = len(x)
    return float(-20 * np.exp(-0.2 * np.sqrt(np.sum(x**2) / d)) - np.exp(np.sum(np.cos(2 * np.pi * x)) / d)
                 + 20 + np.e)


def levy(x: np.ndarray) -> float:
    w = 1 + (np.asarray(x, np.float64) - 1) / 4
    head = np.sin(np.pi * w[0]) ** 2
    mid = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2)
    return float(head + mid + tail)


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    f: Callable[[np.ndarray], float]
    bounds: np.ndarray  # [d, 2]
    f_min: float
    x_min: np.ndarray  # one global minimiser

    @property
    def dim(self) -> int:
        return self.bounds.shape[0]

    def regret(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values) - self.f_min


PROBLEMS = {
    "branin": Problem("branin", branin, np.array([[-5.0, 10.0], [0.0, 15.0]]), 0.397887357729739,
                      np.array([np.pi, 2.275])),
    "hartmann3": Problem("hartmann3", hartmann3, np.array([[0.0, 1.0]] * 3), -3.862782147820756,
                         np.array([0.114614, 0.555649, 0.852547])),
    "hartmann6": Problem("hartmann6", hartmann6, np.array([[0.0, 1.0]] * 6), -3.322368011391339,
                         np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])),
    "ackley5": Problem("ackley5", ackley, np.array([[-32.768, 32.768]] * 5), 0.0, np.zeros(5)),
    "levy4": Problem("levy4", levy, np.array([[-10.0, 10.0]] * 4), 0.0, np.ones(4)),
}
