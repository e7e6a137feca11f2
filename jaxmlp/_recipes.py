"""Named settings that reproduce published MNIST MLP records (``--recipe NAME``).

Each recipe keeps its paper's network and distortions and changes how it is trained
(optimizer, schedule, epochs) so that it needs far less compute; ``differs`` says how.
Flags given beside ``--recipe`` override its settings. ``scripts/records.py`` trains them
and prints the table in ``docs/results.md``.
"""
from typing import NamedTuple, Optional


class Recipe(NamedTuple):
    """A paper's MLP as ``TrainConfig`` settings; ``seeds``: a sweep of that many for an
    ensemble (a committee), else one model."""

    paper: str
    error: float  # the paper's test error, in percent
    settings: dict
    differs: str
    seeds: Optional[int] = None


_ELASTIC = "alpha=34,sigma=4"  # Simard et al. 2003: σ = 4, α = 34 on 28×28 digits
# Simard's network and distortion as jaxmlp trains it; Meier's committee is made of these.
_SIMARD = dict(arch="800:relu,10:linear", augment=_ELASTIC, epochs=120, lr=0.05, momentum=0.9,
               nesterov=True)

# Cireşan's deep net at a quarter of its size (deep_relu), which speedrun995 trains faster.
_DEEP_RELU = dict(arch="1500:relu,1000:relu,500:relu,10:linear",
                  augment=_ELASTIC + ",rotation=15,scale=0.15,shear=15", epochs=150, lr=0.05,
                  momentum=0.9, nesterov=True)

RECIPES = {
    "keras_mlp": Recipe(
        "Keras examples/mnist_mlp.py", 1.60,
        dict(arch="512:relu,512:relu,10:linear", dropout="0,0.2", epochs=20, optimizer="adam",
             lr=1e-3),
        "Adam with cosine decay instead of RMSprop; batch 128 as there"),
    "simard2003": Recipe(
        "Simard, Steinkraus & Platt 2003, 2-layer MLP with elastic distortions", 0.70, _SIMARD,
        "ReLU instead of sigmoid units; minibatches of 128 with Nesterov momentum and "
        "cosine decay instead of per-example SGD; 120 epochs"),
    "dropout2014": Recipe(
        "Srivastava et al. 2014 (dropout), 3x1024 ReLU, permutation-invariant", 1.06,
        dict(arch="1024:relu,1024:relu,1024:relu,10:linear", dropout="0.2,0.5", max_norm=3.0,
             epochs=40, lr=0.05, momentum=0.9, nesterov=True),
        "40 epochs (about 19,000 updates, not a million) with Nesterov momentum and cosine "
        "decay"),
    "goodfellow2015": Recipe(
        "Goodfellow, Shlens & Szegedy 2015, adversarial training (fast gradient sign), "
        "permutation-invariant", 0.78,
        dict(arch="2048:relu,2048:relu,10:linear", dropout="0.2,0.5", max_norm=3.0,
             adversarial=0.05, epochs=100, lr=0.05, momentum=0.9, nesterov=True),
        "ReLU layers of 2048 (not maxout layers of 1600 units of 5 pieces), dropout and "
        "max-norm as dropout2014; the fast gradient sign step 0.05, not 0.25 (0.1 for 150 "
        "epochs: 0.04 points worse; 0.2 and more learn slower); 100 epochs of Nesterov "
        "momentum with cosine decay, not early stopping on adversarial validation error"),
    "meier2011": Recipe(
        "Meier et al. 2011, committee of 784-800-10 nets with elastic distortions", 0.39, _SIMARD,
        "a committee of 8 (not 25): simard2003's recipe, trained at once as one sweep; no "
        "width normalisation", seeds=8),
    "ciresan2010": Recipe(
        "Ciresan et al. 2010, 2500-2000-1500-1000-500 with elastic and affine distortions",
        0.35,
        dict(arch="2500:lecun_tanh,2000:lecun_tanh,1500:lecun_tanh,1000:lecun_tanh,"
                  "500:lecun_tanh,10:linear",
             augment=_ELASTIC + ",rotation=15,scale=0.15,shear=15", epochs=100, lr=0.005,
             momentum=0.9, nesterov=True),
        "100 epochs (not about 800) with Nesterov momentum and cosine decay; one scale "
        "range for both axes; lr 0.005 (at 0.02 the five tanh layers stay at chance)"),
    "deep_relu": Recipe(
        "Ciresan et al. 2010's deep MLP with deformations, at a quarter of its size: "
        "1500-1000-500 ReLU", 0.35, _DEEP_RELU,
        "3.2M parameters, not 12.1M (an hour on 2 CPU cores, not days on a GPU); ReLU, not "
        "scaled tanh; minibatches of 128 with Nesterov momentum and cosine decay; 150 epochs"),
    # Not a paper's: the fastest recipes to 99% and 99.5% found here (scripts/speedrun.py
    # times them).
    "speedrun99": Recipe(
        "jaxmlp speedrun: 99% mean test accuracy in the least training time "
        "(airbench's rules: mean over seeds, warm-up excluded)", 1.0,
        dict(_SIMARD, augment="alpha=30,sigma=4.5", batch_size=256, epochs=13, lr=0.2),
        "simard2003's network with a milder elastic distortion (alpha 30, sigma 4.5: smaller "
        "displacements, which 13 epochs learn better than Simard's), batches of 256 (a "
        "bfloat16 epoch 0.68 s, not 0.85, on a 2-core AMX Xeon), 13 epochs at four times its "
        "peak learning rate (0.2, cosine decay, Nesterov); nothing else. Fastest with "
        "--compute-dtype bfloat16 where the CPU has AMX"),
    "speedrun995": Recipe(
        "jaxmlp speedrun: 99.5% mean test accuracy in at most 5 minutes of training", 0.5,
        dict(_DEEP_RELU, batch_size=256, epochs=130, lr=0.1),
        "deep_relu's network and distortions in batches of 256 (an epoch 2.1 s in bfloat16 on "
        "a 2-core AMX Xeon), 130 epochs at twice its peak learning rate (0.1, cosine decay, "
        "Nesterov); nothing else. Fastest with --compute-dtype bfloat16 where the CPU has "
        "AMX"),
}


def recipe_settings(name: str) -> dict:
    """The ``TrainConfig`` settings of recipe ``name``; ``ValueError`` naming the choices."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: one of {', '.join(RECIPES)}")
    return dict(RECIPES[name].settings)
