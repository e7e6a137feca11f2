"""``jaxmlp-train``: train an MLP on MNIST from the command line."""
import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from jaxmlp.arch import PRESETS

# Settings a resumed run may change (its length, logging, data location and devices);
# any other would make it a different run.
RESUMABLE = {"epochs", "steps", "log_every", "target_accuracy", "data_dir", "manual_dir",
             "download", "devices"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxmlp-train", description="Train a multilayer perceptron on MNIST with JAX.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # Defaults are None here and come from TrainConfig, so --resume can tell what was set.
    p.add_argument("--arch", help=f"preset ({', '.join(PRESETS)}) or 'units:act,...' (default b)")
    p.add_argument("--epochs", type=int, help="epochs to train (default 10)")
    p.add_argument("--steps", type=int, help="total SGD steps; overrides --epochs")
    p.add_argument("--batch-size", type=int, help="examples per step (default 128)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, help="SGD momentum, 0 for none (default 0.9)")
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    p.add_argument("--schedule", choices=["constant", "cosine"], help="learning-rate schedule "
                   "(default cosine)")
    p.add_argument("--seed", type=int, help="PRNG seed (default 0)")
    p.add_argument("--grad", choices=["hand", "autodiff"], help="hand-written backward pass or "
                   "jax.grad (default hand)")
    p.add_argument("--log-every", type=int, help="log a seed-style 'iter N' line every N steps "
                   "(default 1000)")
    p.add_argument("--target-accuracy", type=float, help="stop once test accuracy reaches this")
    p.add_argument("--out", help="output folder (default runs/<arch>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    p.add_argument("--data-dir", help="TFDS data folder (default $TFDS_DATA_DIR or "
                   "~/tensorflow_datasets)")
    p.add_argument("--manual-dir", help="folder with the four original MNIST .gz files")
    p.add_argument("--no-download", dest="download", action="store_false", default=None,
                   help="never download MNIST")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--devices", type=int, help="devices of the data-parallel mesh (default: all)")
    multi = p.add_argument_group("multi-host (all three, on every process)")
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    multi.add_argument("--num-processes", type=int, help="how many processes take part")
    multi.add_argument("--process-id", type=int, help="this process's rank, 0 to K-1")
    multi.add_argument("--init-timeout", type=int, default=60,
                       help="seconds to wait for every process to join")
    return p


def config_from_args(args):
    """The ``TrainConfig`` and output folder that ``args`` ask for (resume included)."""
    from jaxmlp.train import TrainConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if args.resume:
        out = Path(args.resume)
        saved_path = out / "config.json"
        if not saved_path.exists():
            raise FileNotFoundError(f"--resume {out}: no config.json there (is it a run folder?)")
        saved = json.loads(saved_path.read_text())
        changed = sorted(k for k, v in given.items() if k not in RESUMABLE and saved.get(k) != v)
        if changed:
            raise ValueError(f"--resume cannot change {', '.join(changed)}: the run would no "
                             "longer be the same run")
        if args.out and Path(args.out) != out:
            raise ValueError("--resume DIR writes to DIR; drop --out or make it the same")
        return TrainConfig(**{**saved, **given}), out
    config = TrainConfig(**given)
    # A spec such as "50:relu,10:linear" becomes the folder name "50_relu_10_linear".
    return config, Path(args.out or Path("runs") / re.sub(r"[^\w.-]+", "_", config.arch))


def enable_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache, so a second run skips compiling."""
    import jax

    from jaxmlp.data import default_cache_dir

    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from jaxmlp.data import MnistDataError, MnistNotFoundError
    from jaxmlp.train import TrainingDiverged, train_and_evaluate

    try:
        distributed = (args.coordinator, args.num_processes, args.process_id)
        if any(v is not None for v in distributed):
            if any(v is None for v in distributed):
                raise ValueError("multi-host runs need --coordinator, --num-processes and "
                                 "--process-id together")
            from jaxmlp.parallel import initialize_distributed

            # Before any computation: JAX must know the whole cluster first.
            initialize_distributed(*distributed, timeout_s=args.init_timeout)
        config, out = config_from_args(args)  # train_and_evaluate validates it
        enable_compilation_cache()
        result = train_and_evaluate(config, out, resume=bool(args.resume),
                                    progress=not args.no_progress)
    except TrainingDiverged as e:
        print(f"jaxmlp-train: training diverged: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, RuntimeError, FileNotFoundError, MnistNotFoundError,
            MnistDataError) as e:
        print(f"jaxmlp-train: error: {e}", file=sys.stderr)
        return 2
    import jax

    if jax.process_index() == 0:
        print(f"final test accuracy {result['test_accuracy']:.4f} after {result['steps']} steps; "
              f"outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
