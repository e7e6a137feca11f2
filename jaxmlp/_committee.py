"""A committee of different runs: any architectures and recipes, voting together.

A sweep's ensemble (``load_ensemble``) is one setting's seeds; Cireşan et al. 2012 and
Meier et al. 2011 won with committees whose members differ more (their preprocessing, their
networks), because members that err on different digits correct each other. A committee
here is a list of members, each a run folder, or a sweep's folder standing for its best
setting's live seeds, all of one dataset; it votes by the mean of the members'
probabilities (each over ``tta`` distortions too, when given):

    p̄_b = (1 / M) Σ_m p_m(x_b)
"""
import hashlib
import os
from typing import NamedTuple

import numpy as np

from jaxmlp import _checks
from jaxmlp._arch import Arch
from jaxmlp._config import TrainConfig
from jaxmlp._data import DatasetInfo
from jaxmlp._errors import RunError

MAX_MEMBERS = 1000
MAX_BYTES = 8 << 30  # the members' params, all held at once


class Member(NamedTuple):
    """One model of a committee: its name (``runs/a``, ``runs/sweep model 3``), arch and
    params."""

    name: str
    arch: Arch
    params: list[dict]


class Committee(NamedTuple):
    """What ``load_committee`` returns: the members, the dataset they all take, and the
    first folder's config (where its data was found)."""

    members: tuple[Member, ...]
    info: DatasetInfo
    config: TrainConfig


def load_committee(folders) -> Committee:
    """Loads each folder's model(s): a run folder is one member, a sweep's folder its best
    setting's live seeds (``load_ensemble``), one member each.

    Raises:
      RunError: a folder that is not a finished run or sweep (the message names it), no
        folder, more than ``MAX_MEMBERS``, one folder twice or one model twice (a copied
        folder), members of different datasets
        (name, image shape or classes), or params of more than ``MAX_BYTES`` in all.
    """
    from jaxmlp._run import is_sweep, load_ensemble, load_run, model_of

    if isinstance(folders, (str, os.PathLike)) or not hasattr(folders, "__iter__"):
        raise TypeError("folders must be a list of run or sweep folders")
    folders = [_checks.path(f, f"folders[{i}]", "a run or sweep folder")
               for i, f in enumerate(folders)]
    if not folders or len(folders) > MAX_MEMBERS:
        raise RunError(f"a committee takes 1 to {MAX_MEMBERS} run folders, got {len(folders)}")
    seen = set()
    models: dict = {}  # the digest of each member's params -> its name
    members: list[Member] = []
    info, config, held = None, None, 0
    for folder in folders:
        if folder.resolve() in seen:
            raise RunError(f"{folder} is named twice: each run votes once")
        seen.add(folder.resolve())
        if is_sweep(folder):
            committee = load_ensemble(folder)
            new = [Member(f"{folder} model {m}", committee.arch, model_of(committee.params, i))
                   for i, m in enumerate(committee.members)]
            where, first = committee.info, committee.config
        else:
            run = load_run(folder)
            new, where = [Member(str(folder), run.arch, run.params)], run.info
            first = run.config
        # One test split for all: the same dataset by name, not only by shape (two
        # 10-class 28×28 sets would otherwise vote on whichever the first run names).
        if info is not None and (where.name, where.image_shape, where.num_classes) != (
                info.name, info.image_shape, info.num_classes):
            raise RunError(f"{folder} takes {where.name} ({where.image_shape}, "
                           f"{where.num_classes} classes), the committee {info.name} "
                           f"({info.image_shape}, {info.num_classes} classes)")
        info, config = where, config or first
        for m in new:  # a copied run folder holds the same model: it would vote twice
            twin = models.setdefault(_digest(m.params), m.name)
            if twin != m.name:
                raise RunError(f"{m.name} holds the same model as {twin}: each model votes once")
        members += new
        held += sum(np.asarray(v).nbytes for m in new for layer in m.params
                    for v in layer.values())
        if held > MAX_BYTES:
            raise RunError(f"the committee's models hold {held / 2**30:.1f} GiB by {folder}, "
                           f"more than the {MAX_BYTES >> 30} GiB it may hold at once")
    assert info is not None and config is not None
    return Committee(tuple(members), info, config)


def _digest(params) -> str:
    """A model's identity: the SHA-256 of its parameters' bytes, shapes and dtypes."""
    h = hashlib.sha256()
    for layer in params:
        for key in sorted(layer):
            v = np.ascontiguousarray(layer[key])
            h.update(f"{key}{v.shape}{v.dtype}".encode())
            h.update(v.tobytes())
    return h.hexdigest()


def evaluate_committee(committee: Committee, data, tta=None) -> dict:
    """The committee's and each member's figures on ``data``'s test split.

    Returns ``{"members": [{"name", "arch", "test_acc"}], "member_mean", "member_std"
    (of the members' accuracies; std None for one member), "test_loss", "test_acc",
    "per_class_acc", "confusion", "mistakes"}`` (the committee's: ``probability_report``),
    and ``tta`` (``n``, ``augment``, ``seed``) when each member votes over distortions
    (``tta_probabilities``; the members' figures are then theirs too), with
    ``without_tta`` (the plain committee's ``test_loss``, ``test_acc``).
    """
    from jaxmlp._data import Dataset
    from jaxmlp._metrics import probability_report
    from jaxmlp._predict import predict
    from jaxmlp._tta import check_tta, tta_probabilities

    if not isinstance(committee, Committee):
        raise TypeError(f"committee must be a jaxmlp.Committee (load_committee makes one), "
                        f"got {type(committee).__name__}")
    if not isinstance(data, Dataset) or data.info.image_shape != committee.info.image_shape:
        raise ValueError(f"data must be the dataset the committee takes "
                         f"({committee.info.name}, images {committee.info.image_shape})")
    check_tta(tta)
    shape, labels = committee.info.image_shape, np.asarray(data.test_labels)
    plain = [predict(m.params, data.test_images, m.arch, image_shape=shape)
             for m in committee.members]
    probs = plain if tta is None else [
        tta_probabilities(m.params, data.test_images, m.arch, tta, image_shape=shape)
        for m in committee.members]
    accuracies = [float(np.mean(p.argmax(axis=1) == labels)) for p in probs]
    report = {"members": [{"name": m.name, "arch": ",".join(f"{u}:{act}" for u, act in m.arch),
                           "test_acc": a}
                          for m, a in zip(committee.members, accuracies)],
              "member_mean": float(np.mean(accuracies)),
              "member_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
              **probability_report(np.mean(probs, axis=0), labels, mistakes=36)}
    if tta is not None:
        without = probability_report(np.mean(plain, axis=0), labels)
        report["tta"] = tta.record()
        report["without_tta"] = {k: without[k] for k in ("test_loss", "test_acc")}
    return report
