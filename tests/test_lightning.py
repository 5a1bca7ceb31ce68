"""SeededEvaluation: with a real Lightning Trainer, evaluation leaves the training stream bit-identical."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state, outside_state_restored

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from torch.utils.data import DataLoader, Dataset, TensorDataset

from deterministic.lightning import SeededEvaluation


class NoisyDataset(Dataset):  # type: ignore[type-arg]
    """A validation dataset whose items draw from the global torch RNG (in whatever process loads them)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return torch.randn(4) + torch.rand(1), torch.randn(1)


class Model(pl.LightningModule):
    """A tiny regression model with dropout, recording its losses and its evaluation draws."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.losses: list[float] = []
        self.evaluation_draws: list[float] = []

    def training_step(self, batch: Any, index: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch: Any, index: int) -> None:
        if index == 0:
            self.evaluation_draws.append(torch.rand(1).item())

    def test_step(self, batch: Any, index: int) -> None:
        if index == 0:
            self.evaluation_draws.append(torch.rand(1).item())

    def predict_step(self, batch: Any, index: int) -> Any:
        return torch.rand(1)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.fixture(autouse=True)
def lightning_environment() -> Iterator[None]:
    """seed_everything writes PL_* variables and reseeds globally: put everything back."""
    saved = dict(os.environ)
    with outside_state_restored():
        yield
    os.environ.clear()
    os.environ.update(saved)


def train_loader() -> Any:
    generator = torch.Generator().manual_seed(123)
    data = TensorDataset(torch.randn(32, 4, generator=generator), torch.randn(32, 1, generator=generator))
    return DataLoader(data, batch_size=4, shuffle=True, num_workers=2)


def quiet_trainer(tmp_path: Path, callbacks: list[Any], max_epochs: int) -> Any:
    """A CPU Trainer without logger, checkpoints, progress bar or summary."""
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        num_sanity_val_steps=2,
    )


def fit(tmp_path: Path, validation: Any, callbacks: list[Any]) -> Model:
    """Train 2 epochs from seed_everything(0, workers=True); validation is None or a DataLoader."""
    pl.seed_everything(0, workers=True)
    model = Model()
    trainer = quiet_trainer(tmp_path, callbacks, max_epochs=2)
    trainer.fit(model, train_loader(), validation)
    return model


@pytest.mark.torch
def test_training_identical_with_and_without_validation(tmp_path: Path) -> None:
    """With SeededEvaluation, losses are bit-identical with and without validation, 0 or 2 workers."""
    baseline = fit(tmp_path, None, []).losses
    assert len(baseline) == 16
    plain = DataLoader(TensorDataset(torch.zeros(8, 4), torch.zeros(8, 1)), batch_size=4)
    noisy = DataLoader(NoisyDataset(), batch_size=4, num_workers=2)
    for validation in (plain, noisy):
        model = fit(tmp_path, validation, [SeededEvaluation(7)])
        assert model.losses == baseline
        # Sanity check and both epochs' validation start from the same stream.
        assert len(model.evaluation_draws) == 3
        assert len(set(model.evaluation_draws)) == 1


@pytest.mark.torch
def test_without_the_callback_validation_perturbs_training(tmp_path: Path) -> None:
    """The trap the callback removes: plain validation shifts the training stream."""
    baseline = fit(tmp_path, None, []).losses
    plain = DataLoader(TensorDataset(torch.zeros(8, 4), torch.zeros(8, 1)), batch_size=4)
    assert fit(tmp_path, plain, []).losses != baseline


@pytest.mark.torch
def test_test_and_predict_run_in_the_scope(tmp_path: Path) -> None:
    """trainer.test and trainer.predict restore every RNG state and repeat their draws."""
    model = Model()
    callback = SeededEvaluation(7)
    trainer = pl.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    loader = DataLoader(NoisyDataset(), batch_size=4)
    before = full_state()
    trainer.test(model, loader, verbose=False)
    trainer.test(model, loader, verbose=False)
    first, second = trainer.predict(model, loader), trainer.predict(model, loader)
    assert full_state() == before
    assert model.evaluation_draws[0] == model.evaluation_draws[1]
    assert [t.tolist() for t in first] == [t.tolist() for t in second]
    assert all("run" not in vars(loop) for loop in (trainer.test_loop, trainer.predict_loop))


def test_bad_seed_is_refused_at_construction() -> None:
    """SeededEvaluation validates its seed and keywords like deterministic()."""
    with pytest.raises(TypeError):
        SeededEvaluation(1.5)
    with pytest.raises(ValueError, match="unknown source"):
        SeededEvaluation(1, sources=("nope",))


class Indexed(Dataset):  # type: ignore[type-arg]
    """24 items, each its index and a draw from the global torch RNG."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return torch.full((4,), index / 24) + torch.rand(4), torch.zeros(1)


class EpochRecipe(pl.Callback):
    """The earlier docs' recipe: set the loader's epoch in on_train_epoch_start."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.loader.set_epoch(trainer.current_epoch)


@pytest.mark.torch
def test_seeded_loader_trains_every_epoch_in_lightning(tmp_path: Path) -> None:
    """A SeededDataLoader in Lightning (stopping at len(), setting the sampler's epoch) trains 3 epochs."""
    from deterministic import SeededDataLoader

    loader = SeededDataLoader(Indexed(), 5, batch_size=4)
    model = Model()
    quiet_trainer(tmp_path, [EpochRecipe(loader)], max_epochs=3).fit(model, loader)
    assert len(model.losses) == 18
    assert loader.state_dict() == {"epoch": 3, "samples": 0, "size": 24}


@pytest.mark.torch
def test_seeded_training_warns_once_for_loaders_it_cannot_make_exact(tmp_path: Path) -> None:
    """A custom batch_sampler or an iterable dataset is used as it is, with one warning naming it and why."""
    from torch.utils.data import BatchSampler, IterableDataset, SequentialSampler

    from deterministic.lightning import SeededTraining

    class Stream(IterableDataset):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            return iter([(torch.zeros(4), torch.zeros(1))] * 8)

    class Buckets(BatchSampler):
        """A stand-in for a length-bucketing batch sampler."""

    cases = {
        "custom Buckets": DataLoader(
            Indexed(), batch_sampler=Buckets(SequentialSampler(range(24)), 4, False)
        ),
        "IterableDataset": DataLoader(Stream(), batch_size=4),
    }
    for reason, loader in cases.items():
        model = Model()
        trainer = quiet_trainer(tmp_path, [SeededTraining(3)], max_epochs=1)
        with pytest.warns(
            UserWarning, match=f"cannot make train_dataloader exact on resume: .*{reason}"
        ) as caught:
            trainer.fit(model, loader)
        assert sum("SeededTraining" in str(warning.message) for warning in caught) == 1
        assert model.losses  # trained with the loader as it is
