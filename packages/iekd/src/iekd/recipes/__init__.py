"""Training recipes: factor auto-encoder, single-teacher distillation (CE/KD/AT/FT and IE variants), mutual learning.

They are conveniences around the losses in :mod:`iekd.functional` / :mod:`iekd.nn`, which work in any loop.
Each recipe takes optimizer/scheduler factories, reports per-epoch metrics through ``callback``, shows a
tqdm bar on a TTY (``progress=None``), checkpoints atomically after every epoch when ``checkpoint`` is given,
resumes with ``resume=True``, and wraps the trained modules in ``DistributedDataParallel`` when a process
group with several ranks is initialised (give the loader a ``DistributedSampler``).
"""

from ._common import METHODS, Method
from ._distill import distill
from ._factor import train_factor
from ._loop import TrainResult, multistep, sgd
from ._mutual import mutual

__all__ = ["METHODS", "Method", "TrainResult", "distill", "multistep", "mutual", "sgd", "train_factor"]
