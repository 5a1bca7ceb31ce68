"""Training runs for the resume tests: one framework each, killed with SIGKILL right after a checkpoint.

    python resume_runs.py FRAMEWORK WORKDIR [--kill-after STEP] [--resume] [--workers N] [--persistent]
                          [--devices N] [--without] [--seeded-loader]

Every training step appends ``<float.hex(loss)> <sample indices> <digest of the inputs>``
to ``WORKDIR/steps-<rank>.txt`` as it happens, so what a killed run trained survives it.
With ``--kill-after STEP`` the run kills itself with SIGKILL right after the checkpoint of
that (global) step is written; ``--resume`` continues from the latest checkpoint in a fresh
process, and may be killed again.
``--without`` leaves out deterministic's one line (Lightning and transformers), to measure
what it fixes.
The data: 24 samples whose ``__getitem__`` draws from ``random``, NumPy and torch; a model
with dropout; batches of 4 (6 steps an epoch), 3 epochs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import torch
from sample_data import Augmented

EPOCHS, BATCH, SEED = 3, 4, 21


def parse() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("framework")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--persistent", action="store_true")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--without", action="store_true", help="leave out deterministic's one line")
    parser.add_argument("--seeded-loader", action="store_true", help="Lightning: give a SeededDataLoader")
    return parser.parse_args()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return int(distributed.get_rank())
    return int(os.environ.get("LOCAL_RANK", "0"))


def record(workdir: Path, loss: Any, indices: Any, inputs: Any) -> None:
    """Append one step's loss (exactly), sample indices and an input digest to this rank's file."""
    digest = hashlib.sha256(inputs.detach().cpu().numpy().tobytes()).hexdigest()[:16]
    line = f"{float(loss).hex()} {','.join(str(int(i)) for i in indices)} {digest}\n"
    with open(workdir / f"steps-{rank()}.txt", "a") as steps:
        steps.write(line)


def latest(paths: Any) -> Path:
    """The checkpoint of the highest step among ``step=N.ckpt`` files or ``checkpoint-N`` folders."""
    return max(paths, key=lambda path: int(path.stem.replace("=", "-").rsplit("-", 1)[1]))


def kill() -> None:
    """Die as a crashed or preempted job does: no cleanup, no atexit."""
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def network() -> torch.nn.Module:
    """A small CNN with dropout, initialised from a fixed seed."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Flatten(),
        torch.nn.Linear(400, 2),
    )


def loss_of(model: Any, batch: dict[str, Any]) -> Any:
    """Cross-entropy of the model on a batch, labels from the index."""
    return torch.nn.functional.cross_entropy(model(batch["image"]), batch["index"] % 2)


def loader_keywords(options: argparse.Namespace) -> dict[str, Any]:
    """DataLoader worker settings from the command line."""
    if not options.workers:
        return {}
    return {"num_workers": options.workers, "persistent_workers": options.persistent}


def plain(options: argparse.Namespace) -> None:
    """A hand-written loop: SeededDataLoader, snapshot and restore, torch.save."""
    from deterministic import RNGState, SeededDataLoader, restore, snapshot

    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = SeededDataLoader(Augmented(kornia=False), SEED, batch_size=BATCH, **loader_keywords(options))
    path, step = options.workdir / "checkpoint.pt", 0
    if options.resume:
        checkpoint = torch.load(path, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        loader.load_state_dict(checkpoint["loader"])
        restore(RNGState.from_state_dict(checkpoint["rng"]))
        step = checkpoint["step"]
    for epoch in range(loader.epoch, EPOCHS):
        loader.set_epoch(epoch)
        for batch in loader:
            loss = loss_of(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            record(options.workdir, loss.item(), batch["index"], batch["image"])
            step += 1
            if step == options.kill_after:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "loader": loader.state_dict(),
                    "rng": snapshot().state_dict(),
                    "step": step,
                }
                torch.save(state, path)
                kill()


def accelerate_loop(options: argparse.Namespace) -> None:
    """accelerate: a SeededDataLoader prepared by the Accelerator, save_state and load_state."""
    from accelerate import Accelerator, DataLoaderConfiguration

    from deterministic import SeededDataLoader

    accelerator = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=True)
    )
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = SeededDataLoader(Augmented(kornia=False), SEED, batch_size=BATCH, **loader_keywords(options))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    folder, step, start = options.workdir / "state", 0, 0
    if options.resume:
        accelerator.load_state(folder)
        progress = json.loads((options.workdir / "progress.json").read_text())
        step, start = progress["step"], progress["epoch"]
    for epoch in range(start, EPOCHS):
        loader.set_epoch(epoch)
        for batch in loader:
            loss = loss_of(model, batch)
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
            record(options.workdir, loss.item(), batch["index"], batch["image"])
            step += 1
            if step == options.kill_after:
                accelerator.save_state(folder)
                # The epoch the next batch belongs to; the loader's own state holds the position.
                following = epoch + 1 if step % len(loader) == 0 else epoch
                (options.workdir / "progress.json").write_text(json.dumps({"step": step, "epoch": following}))
                kill()


def one_line_callbacks(options: argparse.Namespace) -> list[Any]:
    """``[SeededTraining(SEED)]``, or nothing with ``--without``."""
    if options.without:
        return []
    from deterministic.lightning import SeededTraining

    return [SeededTraining(SEED)]


def lightning(options: argparse.Namespace) -> None:
    """Lightning: the user's DataLoader(shuffle=True), SeededTraining, ModelCheckpoint, ckpt_path."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from deterministic import SeededDataLoader

    workdir = options.workdir

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = network()

        def training_step(self, batch: Any, index: int) -> Any:
            loss = loss_of(self.net, batch)
            record(workdir, loss.item(), batch["index"], batch["image"])
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            self.log("val", loss_of(self.net, batch), sync_dist=True)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Kill(pl.Callback):
        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            if options.kill_after and trainer.global_step == options.kill_after:
                kill()  # the checkpoint of the previous step is on disk (ModelCheckpoint saved it)

    pl.seed_everything(0, verbose=False)  # what a user's script does
    checkpoints = workdir / "checkpoints"
    every = 2 if options.kill_after else 10**6  # the kill steps are even
    saving = pl.callbacks.ModelCheckpoint(
        dirpath=checkpoints, every_n_train_steps=every, save_top_k=-1, filename="{step}"
    )
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=options.devices,
        strategy="ddp" if options.devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        callbacks=[*one_line_callbacks(options), Kill(), saving],
    )
    if options.seeded_loader:  # built before the process group exists, as a user's script does
        train = SeededDataLoader(Augmented(kornia=False), SEED, batch_size=BATCH, **loader_keywords(options))
    else:
        train = DataLoader(
            Augmented(kornia=False), batch_size=BATCH, shuffle=True, **loader_keywords(options)
        )
    validation = DataLoader(Augmented(size=8, kornia=False), batch_size=4)
    path = None
    if options.resume:
        path = str(latest(checkpoints.glob("*.ckpt")))
    trainer.fit(Module(), train, validation, ckpt_path=path)


def transformers_trainer(options: argparse.Namespace) -> None:
    """The Hugging Face Trainer: a tiny BERT from a config, seed_training, resume_from_checkpoint."""
    import transformers

    workdir = options.workdir

    class Tokens:
        """Token sequences with random masking drawn from random, NumPy and torch."""

        def __len__(self) -> int:
            return 24

        def __getitem__(self, index: int) -> dict[str, Any]:
            ids = torch.arange(8) * (index + 1) % 50 + 1
            ids[random.randrange(8)] = 0
            ids[int(np.random.randint(8))] = 0
            ids = ids + (torch.rand(8) < 0.2).long()
            return {"input_ids": ids, "attention_mask": torch.ones(8, dtype=torch.long), "labels": index % 2}

    class Recording(transformers.BertForSequenceClassification):
        def forward(self, input_ids: Any = None, labels: Any = None, **kwargs: Any) -> Any:
            output = super().forward(input_ids=input_ids, labels=labels, **kwargs)
            if self.training:
                record(workdir, output.loss.item(), labels, input_ids)
            return output

    class Kill(transformers.TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if options.kill_after and state.global_step == options.kill_after:
                kill()  # the checkpoint of the previous step is on disk

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        hidden_dropout_prob=0.3,
    )
    arguments = transformers.TrainingArguments(
        output_dir=str(workdir / "out"),
        per_device_train_batch_size=BATCH,
        num_train_epochs=EPOCHS,
        learning_rate=1e-3,
        save_strategy="steps" if options.kill_after else "no",
        save_steps=4,  # the kill steps are multiples: the trainer keeps the first run's value on resume
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=options.workers,
        dataloader_persistent_workers=options.persistent,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=Recording(config), args=arguments, train_dataset=Tokens(), callbacks=[Kill()]
    )
    if not options.without:
        from deterministic.transformers import seed_training

        seed_training(trainer, SEED)
    path = None
    if options.resume:
        path = str(latest((workdir / "out").glob("checkpoint-*")))
    trainer.train(resume_from_checkpoint=path)


RUNS = {
    "plain": plain,
    "accelerate": accelerate_loop,
    "lightning": lightning,
    "transformers": transformers_trainer,
}

if __name__ == "__main__":
    arguments = parse()
    RUNS[arguments.framework](arguments)
