"""Training: a typed config, presets, one loop with atomic, resumable checkpoints.

::

    from spikeflow.train import TrainConfig, train

    summary = train(TrainConfig(epochs=30, out="runs/digits-mlp"))
    summary["test_accuracy"]

``spikeflow train`` (:mod:`spikeflow.cli`) is a thin layer over :func:`train`.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import DEFAULTS, ENCODINGS, INITS, OPTIMIZERS, READOUTS, SCHEDULERS, TrainConfig, load_config
from .presets import PRESETS, Preset, build_model, get_preset, load_data
from .trainer import evaluate, make_optimizer, make_scheduler, seed_everything, train, translate

__all__ = [
    "DEFAULTS",
    "ENCODINGS",
    "INITS",
    "SCHEDULERS",
    "load_data",
    "make_scheduler",
    "translate",
    "OPTIMIZERS",
    "PRESETS",
    "READOUTS",
    "CheckpointError",
    "Preset",
    "TrainConfig",
    "build_model",
    "evaluate",
    "get_preset",
    "load_checkpoint",
    "load_config",
    "make_optimizer",
    "save_checkpoint",
    "seed_everything",
    "train",
]
