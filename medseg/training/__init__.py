"""Training: data preparation, the training loop, checkpoints, schedules, distributed runs."""

from medseg.training.trainer import Trainer, train

__all__ = ["Trainer", "train"]
