"""Training a single run: ``train_and_evaluate``, the grid of one of ``jaxmlp.trainer.fit``.

The epoch (``jaxmlp.epoch``) runs on the device as one ``lax.scan``; the loop
(``jaxmlp.trainer``) evaluates, saves and logs after each. Epoch ``e``'s data order is
``shuffle(fold_in(data_key, e))``, so a resumed run takes exactly the batches the
uninterrupted run would have taken.
"""
from typing import Optional

from jaxmlp.config import TrainConfig
from jaxmlp.data import Dataset



def train_and_evaluate(config: TrainConfig, out=None, *, resume: bool = False,
                       overwrite: bool = False, data: Optional[Dataset] = None, log=print,
                       progress: bool = False) -> dict:
    """Trains ``config.arch`` on ``config.dataset`` and evaluates it after every epoch.

    Args:
      config: the run.
      out: its run folder (``jaxmlp.run``); nothing is written when ``None``.
      resume: continue the run saved in ``out`` (exactly: same data order, same
        arithmetic) up to ``config``'s length, under ``jaxmlp.config._resume_length``'s rules.
      overwrite: replace the run in ``out`` (its files go when this run saves an epoch).
      data: the dataset's arrays (``Dataset``, without a validation split: ``config.val_size``
        holds one out); loaded with ``load_dataset`` from the config when ``None``.
      log: where log lines go.
      progress: show a tqdm bar that advances once per epoch.

    Returns:
      ``{"params", "history", "test_accuracy", "val_accuracy", "steps"}`` (the last epoch's
      accuracies; ``val_accuracy`` is None without a validation split).

    Raises:
      ValueError: a config, folder (``RunError``) or resume that cannot work, before any work.
      TrainingDiverged: the loss became NaN or infinite.
      TrainingInterrupted: Ctrl-C; the finished epochs are saved and plotted.
      RunWriteError: a file of the run could not be written (disk full, file too large).
    """
    from jaxmlp.trainer import fit

    return fit(config, None, out, resume=resume, overwrite=overwrite, data=data, log=log,
               progress=progress)
