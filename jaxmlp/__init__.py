"""jaxmlp: multilayer perceptrons in JAX as pure functions, with hand-derived gradients
proven equal to ``jax.grad``.

The names below are the public API. They load on first use (PEP 562), so that
``import jaxmlp`` and the ``jaxmlp`` command start without JAX: a Ctrl-C while JAX and
TensorFlow load is then still the command's to answer (``jaxmlp._entry``).
"""
import importlib
import sys
import types

_WHERE = {
    "ACTIVATIONS": "activations", "Activation": "activations",
    "PRESETS": "arch", "Arch": "arch", "Layer": "arch", "parse_arch": "arch",
    "hand_grad": "backprop", "hand_loss": "backprop", "hand_value_and_grad": "backprop",
    "Grid": "config", "TrainConfig": "config",
    "cross_entropy": "cross_entropy", "cross_entropy_grad": "cross_entropy",
    "Dataset": "data", "DatasetInfo": "data", "load_dataset": "data",
    "gradcheck": "gradcheck",
    "prepare_images": "images",
    "evaluate": "metrics", "evaluate_models": "metrics", "evaluation_report": "metrics",
    "forward": "mlp", "forward_layers": "mlp", "init_params": "mlp", "loss": "mlp",
    "make_optimizer": "optim", "HyperState": "optim",
    "predict": "predict", "top_k": "predict",
    "Run": "run", "RunError": "run", "evaluate_run": "run", "load_model": "run",
    "load_run": "run",
    "log_softmax": "softmax", "softmax": "softmax", "softmax_jacobian": "softmax",
    "train_many": "trainer",
    "train_and_evaluate": "trainer",
    "TrainingDiverged": "trainer", "TrainingInterrupted": "trainer", "fit": "trainer",
    "smooth_labels": "cross_entropy", "DatasetError": "data", "DatasetNotFoundError": "data",
    "MNIST": "data", "make_step": "epoch", "make_epoch": "epoch", "shuffle": "epoch",
    "model_probabilities": "metrics", "dropout_masks": "mlp", "schedule": "optim",
    "max_norm": "optim", "OPTIMIZERS": "optim", "make_mesh": "parallel",
    "initialize_distributed": "parallel", "toy_trace": "toy", "load_inputs": "predict",
    "Augmentation": "augment", "parse_augment": "augment", "augment": "augment",
    "elastic": "augment", "elastic_field": "augment", "affine": "augment",
    "affine_field": "augment", "resample": "augment",
    "Recipe": "recipes", "RECIPES": "recipes", "recipe_settings": "recipes", "ema": "optim",
}

__all__ = [
    "ACTIVATIONS", "Activation", "Arch", "Layer", "PRESETS", "parse_arch",
    "init_params", "forward", "forward_layers", "loss", "dropout_masks",
    "softmax", "log_softmax", "softmax_jacobian", "cross_entropy", "cross_entropy_grad",
    "smooth_labels", "hand_grad", "hand_loss", "hand_value_and_grad", "gradcheck", "toy_trace",
    "TrainConfig", "Grid", "make_optimizer", "HyperState", "OPTIMIZERS", "schedule", "max_norm",
    "ema",
    "make_step", "make_epoch", "shuffle", "fit", "train_and_evaluate", "train_many",
    "TrainingDiverged", "TrainingInterrupted", "make_mesh", "initialize_distributed",
    "Augmentation", "parse_augment", "augment", "elastic", "elastic_field", "affine",
    "affine_field", "resample", "Recipe", "RECIPES", "recipe_settings",
    "Dataset", "DatasetInfo", "MNIST", "DatasetError", "DatasetNotFoundError", "load_dataset",
    "prepare_images", "evaluate", "evaluate_models", "model_probabilities", "evaluation_report",
    "Run", "RunError", "load_run", "load_model", "evaluate_run", "predict", "top_k", "load_inputs",
]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"jaxmlp.{_WHERE[name]}"), name)
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


class _Package(types.ModuleType):
    """Importing the submodule ``jaxmlp.softmax`` sets the package's attribute ``softmax``
    to that module (the import system does); here it stays the function of that name, as
    the API says (likewise ``predict``, ``cross_entropy``)."""

    def __setattr__(self, name, value):
        if name in _WHERE and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
