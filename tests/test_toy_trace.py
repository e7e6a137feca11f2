"""Seed Problem 3: the 2×2 example, pinned to closed forms, and the seed's own table explained."""
import ast
import subprocess
import sys

import numpy as np
import pytest

from jaxmlp._toy import toy_trace

SIGMA = lambda t: 1 / (1 + np.exp(-t))
PATTERN = np.array([[1.0, -1.0], [-1.0, 1.0]])


def closed_form(iterations, lr=2.0):
    """By symmetry z_t = s_t·PATTERN; the diagonal p is σ(2 s_t), dz = (p − I)/2 = −σ(−2 s_t)/2
    on the diagonal, db = Σ_batch dz = 0, and SGD gives s_{t+1} = s_t + lr·σ(−2 s_t)/2."""
    s, rows = 0.0, []
    for _ in range(iterations):
        d = SIGMA(2 * s)
        p = np.array([[d, 1 - d], [1 - d, d]])
        dz = -SIGMA(-2 * s) / 2 * PATTERN
        rows.append({"z": s * PATTERN, "p": p, "dz": dz, "dW": dz, "db": np.zeros(2)})
        s += lr * SIGMA(-2 * s) / 2
    return rows


@pytest.mark.parametrize("lr", [2.0, 0.5])
def test_trace_matches_closed_form(x64, lr):
    eye = np.eye(2)
    rows = toy_trace(eye, eye, np.zeros((2, 2)), np.zeros(2), lr=lr, iterations=5)
    for got, want in zip(rows, closed_form(5, lr), strict=True):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-15, err_msg=name)


def test_script_prints_seed_layout():
    out = subprocess.run([sys.executable, "scripts/toy_trace.py"], capture_output=True,
                         text=True, check=True).stdout
    lines = out.strip().splitlines()
    # What is traced (issue 26: X, Y, W, b and lr were never printed), then the seed's
    # layout, each iteration with its mean cross-entropy J (seeing it fall is the point).
    assert lines[0] == ("X = [[1.0, 0.0], [0.0, 1.0]], Y = [[1.0, 0.0], [0.0, 1.0]] (one-hot), "
                        "W = [[0.0, 0.0], [0.0, 0.0]], b = [0.0, 0.0], lr = 2.0")
    assert lines[1] == "iteration = 0" and lines[8] == "iteration = 1" and len(lines) == 15
    want = closed_form(2)
    for k, line in enumerate(lines[1:]):
        if k % 7:
            name, value = line.split(" = ")
            assert name == ["z", "dz", "p", "dW", "db", "J"][k % 7 - 1]
            p = want[k // 7]["p"]
            expected = -np.log(p[0][0]) if name == "J" else want[k // 7][name]  # p[b][y_b]
            np.testing.assert_allclose(ast.literal_eval(value), expected, atol=1e-15)
    assert float(lines[7].split(" = ")[1]) == float(np.log(2.0))  # W = 0: p = 1/2 for both
    # Iteration 1, as printed: z = ±0.5 and p = σ(±1) to the last digit.
    assert lines[9] == "z = [[0.5, -0.5], [-0.5, 0.5]]"
    hi, lo = float(SIGMA(1.0)), float(SIGMA(-1.0))
    assert lines[11] == f"p = [[{hi!r}, {lo!r}], [{lo!r}, {hi!r}]]"


# The seed's table (HW2 Problem 3), copied as printed there.
SEED = [
    {"z": [[0.0, 0.0], [0.0, 0.0]], "dz": [[0.25, -0.25], [-0.25, 0.25]],
     "p": [[0.5, 0.5], [0.5, 0.5]], "dW": [[0.25, -0.25], [-0.25, 0.25]],
     "db": [[0.25, -0.25], [-0.25, 0.25]]},
    {"z": [[-0.5, 0.5], [0.5, -0.5]],
     "dz": [[0.36552928931500245, -0.36552928931500245], [-0.36552928931500245, 0.36552928931500245]],
     "p": [[0.2689414213699951, 0.7310585786300049], [0.7310585786300049, 0.2689414213699951]],
     "dW": [[0.36552928931500245, -0.36552928931500245], [-0.36552928931500245, 0.36552928931500245]],
     "db": [[0.36552928931500245, -0.36552928931500245], [-0.36552928931500245, 0.36552928931500245]]},
]


def seed_computation(iterations, lr=2.0):
    """What produces the seed's numbers: dz = (y − p)/B, the sign of the gradient flipped,
    db printed per example (not summed over the batch), then W ← W − lr·dW, so each step
    climbs the loss. (The summed db is 0 here, so b stays 0 whatever its update.)"""
    x = y = np.eye(2)
    w, b, rows = np.zeros((2, 2)), np.zeros(2), []
    for _ in range(iterations):
        z = x @ w + b
        e = np.exp(z - z.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        dz = (y - p) / 2
        rows.append({"z": z, "dz": dz, "p": p, "dW": x.T @ dz, "db": dz})
        w, b = w - lr * x.T @ dz, b - lr * dz.sum(0)
    return rows


def test_a_large_lr_gives_the_loss_of_the_logits_not_nan():
    # Found by a fresh-eyes test: lr 2000 rounds p to exactly [[1, 0], [0, 1]], and
    # Σ y log p read 0·log 0 as NaN (J = nan, two RuntimeWarnings). J is the cross-entropy
    # of the logits z = ±s: log(1 + e^{−2s}), which float64 rounds to 0 past s ≈ 19.
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "jaxmlp", "toy", "--lr", "2000",
                           "--iterations", "3"], capture_output=True, text=True, check=True)
    assert proc.stderr == ""
    js = [float(line.split(" = ")[1]) for line in proc.stdout.splitlines()
          if line.startswith("J = ")]
    with np.errstate(over="ignore"):  # σ(−1000) = 1/(1 + e^1000) = 0
        s = [row["z"][0][0] for row in closed_form(3, lr=2000)]
    assert s[1] == pytest.approx(500.0) and js == [np.log(2.0), 0.0, 0.0]
    assert js == [float(np.logaddexp(0, -2 * t)) for t in s]


def test_seed_table_is_gradient_ascent():
    for got, seed in zip(seed_computation(2), SEED, strict=True):
        for name, value in seed.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_seed_table_versus_correct_computation():
    ours, seed = closed_form(2), SEED
    # Agree: iteration 0's z and p, and iteration 1's p up to the swap of its columns.
    np.testing.assert_array_equal(ours[0]["z"], seed[0]["z"])
    np.testing.assert_array_equal(ours[0]["p"], seed[0]["p"])
    np.testing.assert_allclose(ours[1]["p"][:, ::-1], seed[1]["p"], atol=1e-16)
    # Disagree: every dz and dW has the opposite sign; db should be the zero vector;
    # iteration 1's z is the negative of the correct one, and its |dz| differs.
    np.testing.assert_array_equal(ours[0]["dz"], -np.array(seed[0]["dz"]))
    np.testing.assert_array_equal(ours[1]["z"], -np.array(seed[1]["z"]))
    assert not np.allclose(np.abs(ours[1]["dz"]), np.abs(seed[1]["dz"]))
    assert np.array(seed[0]["db"]).shape == (2, 2) and ours[0]["db"].shape == (2,)
