"""jaxmlp: multilayer perceptrons in JAX as pure functions, with hand-derived gradients
proven equal to ``jax.grad``.

``_API`` below is the public API, each name once with the module that defines it
(docs/api.md lists them); ``__all__`` is its names. They load on first use (PEP 562), so
that ``import jaxmlp`` and the ``jaxmlp`` command start without JAX: a Ctrl-C while JAX and
TensorFlow load is then still the command's to answer (``jaxmlp.app._entry``). Every
module is private (``_softmax`` holds ``softmax``), so ``_API`` is the whole surface and a
package attribute is always the function. The application (the command, ``jaxmlp
serve``) is ``jaxmlp.app``, built on these names.
"""
import importlib

_API = {
    # The math: architectures, the forward pass, the losses and their hand-derived gradients.
    "ACTIVATIONS": "_activations", "Activation": "_activations", "Arch": "_arch", "Layer": "_arch",
    "PRESETS": "_arch", "parse_arch": "_arch", "summary": "_arch", "init_params": "_mlp",
    "forward": "_mlp", "forward_layers": "_mlp", "loss": "_mlp", "dropout_masks": "_mlp",
    "matmul": "_mlp", "matmul_backward": "_mlp", "fast_gradient_sign": "_mlp",
    "softmax": "_softmax", "log_softmax": "_softmax", "softmax_jacobian": "_softmax",
    "cross_entropy": "_cross_entropy", "cross_entropy_grad": "_cross_entropy",
    "smooth_labels": "_cross_entropy", "hand_grad": "_backprop", "hand_loss": "_backprop",
    "hand_value_and_grad": "_backprop", "gradcheck": "_gradcheck", "toy_trace": "_toy",
    # Training: settings, optimizers, step and epoch, the loop, distortions, recipes, devices.
    "TrainConfig": "_config", "Grid": "_config", "make_optimizer": "_optim", "HyperState": "_optim",
    "OPTIMIZERS": "_optim", "schedule": "_optim", "max_norm": "_optim", "ema": "_optim",
    "make_step": "_epoch", "make_epoch": "_epoch", "shuffle": "_epoch", "fit": "_trainer",
    "train_and_evaluate": "_trainer", "train_many": "_trainer", "TrainingDiverged": "_trainer",
    "TrainingInterrupted": "_trainer", "Augmentation": "_augment", "parse_augment": "_augment",
    "augment": "_augment", "elastic": "_augment", "elastic_field": "_augment", "affine": "_augment",
    "affine_field": "_augment", "resample": "_augment", "width_normalise": "_width",
    "ink_columns": "_width", "Recipe": "_recipes", "RECIPES": "_recipes",
    "recipe_settings": "_recipes", "make_mesh": "_parallel", "initialize_distributed": "_parallel",
    # Data and using a run: datasets, evaluation, run folders, models, prediction.
    "Dataset": "_data", "DatasetInfo": "_data", "MNIST": "_data", "DatasetError": "_errors",
    "DatasetNotFoundError": "_errors", "load_dataset": "_data", "prepare_images": "_images",
    "evaluate": "_metrics", "evaluate_models": "_metrics", "model_probabilities": "_metrics",
    "evaluation_report": "_metrics", "Run": "_run", "RunError": "_errors", "load_run": "_run",
    "load_model": "_run", "evaluate_run": "_run", "evaluate_ensemble": "_run",
    "Ensemble": "_run", "load_ensemble": "_run", "predict": "_predict",
    "predict_ensemble": "_predict", "top_k": "_predict", "load_inputs": "_predict",
    "export": "_export", "TTA": "_tta", "tta_probabilities": "_tta", "Committee": "_committee",
    "load_committee": "_committee", "evaluate_committee": "_committee",
}

__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module(f"jaxmlp.{_API[name]}"), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    try:  # jaxmlp._sweep and friends, as after `import jaxmlp._sweep`
        return importlib.import_module(f"jaxmlp.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"jaxmlp.{name}":
            raise
        raise AttributeError(f"module 'jaxmlp' has no attribute {name!r}") from None


def __dir__():
    return sorted({*globals(), *__all__})
