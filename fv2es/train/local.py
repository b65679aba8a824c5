"""The training loop in this process, without Ray: one worker on the CPU, the shards read with
pyarrow, each epoch's checkpoint written straight into the run folder.

It runs :func:`fv2es.train.loop.train_loop` itself, so what a run learns here is what the loop
learns under Ray Train (the tests check each modality's learning this way). What Ray Train adds is
not here: several workers (DDP), restarting a failed worker from its checkpoint, continuing a run
by name, keeping only ``train.keep_checkpoints`` folders; :func:`fv2es.train.job.run_train` does those.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from fv2es.config import Config
from fv2es.errors import ConfigError, InputError
from fv2es.shards import MODEL_COLUMNS, ExampleShards, model_columns, table_batches
from fv2es.train.job import TrainRequest, finish_run, plan_run
from fv2es.train.run import RunFolder


class LocalWorker:
    """The one worker of an in-process run: rank 0 of 1, on the CPU (the calls of
    :class:`fv2es.train.worker.RayTrainWorker`)."""

    rank, world, local_world = 0, 1, 1
    device = torch.device("cpu")

    def __init__(self, shards: ExampleShards, run: RunFolder, columns: list[str] = MODEL_COLUMNS):
        self.shards, self.run, self.columns = shards, run, columns
        self._splits: dict[str, pa.Table] = {}

    def _split(self, split: str) -> pa.Table:
        if split not in self._splits:
            self._splits[split] = self.shards.read(self.columns, split=split, usable=True)
        return self._splits[split]

    def prepare_model(self, model):
        return model

    def train_batches(self, batch_size: int, seed: int):
        """The whole training split in an order shuffled with ``seed``."""
        table = self._split("train")
        order = np.random.default_rng(seed).permutation(table.num_rows)
        return table_batches(table.take(pa.array(order)), batch_size)

    def eval_batches(self, split: str) -> list:
        return list(table_batches(self._split(split), 32))

    def restored(self, read_saved):
        return None  # a new run each time (train_in_process refuses a run folder with checkpoints)

    def report(self, row: dict, folder: str | None, name: str) -> None:
        self.run.write_checkpoint(name, folder)


def train_in_process(cfg: Config, req: TrainRequest) -> dict:
    """:func:`fv2es.train.job.run_train` in this process without Ray (see the module doc): the same
    checks, loop and run folder (every epoch's checkpoint kept); returns the best epoch's row.

    Raises:
        ConfigError: more than one worker, or a GPU, is asked for.
        InputError: the run folder already has checkpoints (continuing a run is Ray Train's).
    """
    if cfg.train.num_workers != 1 or cfg.train.use_gpu:
        raise ConfigError("an in-process run is one worker on the CPU: train.num_workers=1, train.use_gpu=false")
    from fv2es.train.loop import train_loop

    planned = plan_run(cfg, req)
    run = RunFolder(f"{req.output_uri.rstrip('/')}/{planned.name}", req.storage_options)
    if run.checkpoint_names():
        raise InputError(f"{run.uri} already has checkpoints; continue it with `fv2es train` (Ray Train)")
    threads = torch.get_num_threads()  # the loop sizes this process's threads for its worker
    try:
        train_loop(planned.loop_config, LocalWorker(planned.shards, run, model_columns(planned.cfg.model)))
    finally:
        torch.set_num_threads(threads)
    return finish_run(req, planned.name)
