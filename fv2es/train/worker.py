"""What the training loop (:func:`fv2es.train.loop.train_loop`) asks of the process it runs in,
under Ray Train: its rank and device, its shard of the training split, the evaluation splits, the
checkpoint to restore, and where each epoch's report goes.

:class:`fv2es.train.local.LocalWorker` answers the same calls in one process without Ray.
"""

from __future__ import annotations

from pathlib import Path


class RayTrainWorker:
    """This process as one of Ray Train's ``TorchTrainer`` workers (one per worker process)."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world, self.local_world = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_world_size()
        self.device = ray.train.torch.get_device()
        self._eval: dict[str, list] = {}

    def prepare_model(self, model):
        """The model on this worker's device, wrapped in DDP when there are several workers."""
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def train_batches(self, batch_size: int, seed: int):
        """This worker's shard of the training split, shuffled locally with ``seed``, as pyarrow batches."""
        import ray.train

        return ray.train.get_dataset_shard("train").iter_batches(
            batch_size=batch_size, batch_format="pyarrow", local_shuffle_buffer_size=256, local_shuffle_seed=seed)

    def eval_batches(self, split: str) -> list:
        """Rank 0's copy of a whole evaluation split, read once per worker process and kept: the
        splits are small, and a Ray Data pass per epoch costs seconds of start-up each time."""
        import ray.train

        if split not in self._eval:
            shard = ray.train.get_dataset_shard(split)
            self._eval[split] = list(shard.iter_batches(batch_size=32, batch_format="pyarrow"))
        return self._eval[split]

    def restored(self, read_saved):
        """``read_saved(read)`` of Ray Train's latest checkpoint (a restart after a failure, or a
        run continued by name), or None."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if not checkpoint:
            return None
        with checkpoint.as_directory() as folder:
            return read_saved(lambda name: Path(folder, name).read_bytes())

    def report(self, row: dict, folder: str | None, name: str) -> None:
        """Report an epoch's metrics, with the checkpoint written in ``folder`` (rank 0's; None on
        the other ranks), to be kept as ``name`` in the run folder."""
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(row, checkpoint=checkpoint, checkpoint_dir_name=name)
