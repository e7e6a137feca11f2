"""jaxmlp: multilayer perceptrons in JAX as pure functions, with hand-derived gradients
proven equal to ``jax.grad``.

``_API`` below is the public API, each name once with the module that defines it
(docs/api.md lists them); ``__all__`` is its names. They load on first use (PEP 562), so
that ``import jaxmlp`` and the ``jaxmlp`` command start without JAX: a Ctrl-C while JAX and
TensorFlow load is then still the command's to answer (``jaxmlp.app._entry``). A module
named like one of its functions is private (``_softmax`` holds ``softmax``), so the
package's attribute is always the function. The application (the command, ``jaxmlp
serve``) is ``jaxmlp.app``, built on these names.
"""
import importlib

_API = {
    # The math: architectures, the forward pass, the losses and their hand-derived gradients.
    "ACTIVATIONS": "activations", "Activation": "activations", "Arch": "arch", "Layer": "arch",
    "PRESETS": "arch", "parse_arch": "arch", "init_params": "mlp", "forward": "mlp",
    "forward_layers": "mlp", "loss": "mlp", "dropout_masks": "mlp", "softmax": "_softmax",
    "log_softmax": "_softmax", "softmax_jacobian": "_softmax", "cross_entropy": "_cross_entropy",
    "cross_entropy_grad": "_cross_entropy", "smooth_labels": "_cross_entropy",
    "hand_grad": "backprop", "hand_loss": "backprop", "hand_value_and_grad": "backprop",
    "gradcheck": "_gradcheck", "toy_trace": "toy",
    # Training: settings, optimizers, step and epoch, the loop, distortions, recipes, devices.
    "TrainConfig": "config", "Grid": "config", "make_optimizer": "optim", "HyperState": "optim",
    "OPTIMIZERS": "optim", "schedule": "optim", "max_norm": "optim", "ema": "optim",
    "make_step": "epoch", "make_epoch": "epoch", "shuffle": "epoch", "fit": "trainer",
    "train_and_evaluate": "trainer", "train_many": "trainer", "TrainingDiverged": "trainer",
    "TrainingInterrupted": "trainer", "Augmentation": "_augment", "parse_augment": "_augment",
    "augment": "_augment", "elastic": "_augment", "elastic_field": "_augment",
    "affine": "_augment", "affine_field": "_augment", "resample": "_augment", "Recipe": "recipes",
    "RECIPES": "recipes", "recipe_settings": "recipes", "make_mesh": "parallel",
    "initialize_distributed": "parallel",
    # Data and using a run: datasets, evaluation, run folders, models, prediction.
    "Dataset": "data", "DatasetInfo": "data", "MNIST": "data", "DatasetError": "data",
    "DatasetNotFoundError": "data", "load_dataset": "data", "prepare_images": "images",
    "evaluate": "metrics", "evaluate_models": "metrics", "model_probabilities": "metrics",
    "evaluation_report": "metrics", "Run": "run", "RunError": "run", "load_run": "run",
    "load_model": "run", "evaluate_run": "run", "predict": "_predict", "top_k": "_predict",
    "load_inputs": "_predict",
}

__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module(f"jaxmlp.{_API[name]}"), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    try:  # jaxmlp.sweep and friends, as after `import jaxmlp.sweep`
        return importlib.import_module(f"jaxmlp.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"jaxmlp.{name}":
            raise
        raise AttributeError(f"module 'jaxmlp' has no attribute {name!r}") from None


def __dir__():
    return sorted({*globals(), *__all__})
