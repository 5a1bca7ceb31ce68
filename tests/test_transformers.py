"""seed_evaluation: with a real transformers Trainer and a tiny model, training ignores evaluation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import full_state, outside_state_restored

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from deterministic.transformers import seed_evaluation


@pytest.fixture(autouse=True)
def transformers_environment() -> Iterator[None]:
    """Trainer seeds globally and may set environment variables: put everything back."""
    saved = dict(os.environ)
    with outside_state_restored():
        yield
    os.environ.clear()
    os.environ.update(saved)


def dataset(size: int, offset: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(offset)
    return [
        {
            "input_ids": torch.randint(0, 50, (6,), generator=generator),
            "attention_mask": torch.ones(6, dtype=torch.long),
            "labels": torch.randint(0, 2, (), generator=generator),
        }
        for _ in range(size)
    ]


def trainer(tmp_path: Path, evaluate: bool) -> Any:
    """A Trainer for a two-layer BERT built from a config (nothing downloaded)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    model = transformers.BertForSequenceClassification(config)
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        num_train_epochs=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=model, args=arguments, train_dataset=dataset(16, 1), eval_dataset=dataset(8, 2)
    )


def losses(run: Any) -> list[float]:
    return [entry["loss"] for entry in run.state.log_history if "loss" in entry]


@pytest.mark.torch
def test_training_identical_with_and_without_evaluation(tmp_path: Path) -> None:
    """With seed_evaluation, training losses are bit-identical with and without evaluation during train()."""
    baseline = trainer(tmp_path, evaluate=False)
    baseline.train()
    seeded_run = seed_evaluation(trainer(tmp_path, evaluate=True), 7)
    seeded_run.train()
    assert len(losses(baseline)) == 8
    assert losses(seeded_run) == losses(baseline)
    evaluations = [entry["eval_loss"] for entry in seeded_run.state.log_history if "eval_loss" in entry]
    assert len(evaluations) == 4
    plain_run = trainer(tmp_path, evaluate=True)
    plain_run.train()
    assert losses(plain_run) != losses(baseline)  # the trap: evaluation shifts the training stream


@pytest.mark.torch
def test_direct_evaluate_and_predict_restore_and_repeat(tmp_path: Path) -> None:
    """Called directly, evaluate() and predict() repeat their results and restore every RNG state."""
    run = seed_evaluation(trainer(tmp_path, evaluate=True), 7)
    run.model.train()  # dropout on, so that the forward pass draws
    before = full_state()
    first, second = run.evaluate(), run.evaluate()
    predictions = [run.predict(dataset(4, 3)).predictions.tolist() for _ in range(2)]
    assert full_state() == before
    assert first["eval_loss"] == second["eval_loss"]
    assert predictions[0] == predictions[1]
    assert seed_evaluation(run, 7) is run  # idempotent


def test_seed_evaluation_refuses_other_objects() -> None:
    """A non-trainer or a bad seed is a TypeError naming what is accepted."""
    with pytest.raises(TypeError, match="needs a trainer with an evaluate"):
        seed_evaluation(object(), 1)
    with pytest.raises(TypeError):
        seed_evaluation(object(), 1.5)


@pytest.mark.torch
def test_seed_training_with_evaluation_trains_as_without(tmp_path: Path) -> None:
    """seed_training with seed_evaluation: the same losses with and without evaluation; a SeededDataLoader."""
    from deterministic import SeededDataLoader
    from deterministic.transformers import seed_training

    runs = {}
    for evaluate in (False, True):
        run = trainer(tmp_path / str(evaluate), evaluate=evaluate)
        seed_evaluation(run, 3)
        assert seed_training(run, 5) is run
        assert seed_training(run, 5) is run  # twice changes nothing
        assert isinstance(run.get_train_dataloader(), SeededDataLoader)
        assert run.args.ignore_data_skip
        run.train()
        runs[evaluate] = losses(run)
    assert runs[True] == runs[False]


@pytest.mark.torch
def test_seed_training_refuses_what_it_cannot_make_exact(tmp_path: Path) -> None:
    """Not a Trainer is a TypeError; length-grouped sampling warns and keeps the trainer's loader."""
    from deterministic import SeededDataLoader
    from deterministic.transformers import seed_training

    with pytest.raises(TypeError, match="needs a transformers Trainer, not object"):
        seed_training(object(), 1)
    run = trainer(tmp_path, evaluate=False)
    run.args.train_sampling_strategy = "group_by_length"
    seed_training(run, 5)
    with pytest.warns(UserWarning, match="group_by_length"):
        loader = run.get_train_dataloader()
    assert not isinstance(loader, SeededDataLoader)


@pytest.mark.torch
def test_resuming_with_another_seed_is_refused(tmp_path: Path) -> None:
    """A checkpoint written with one seed and resumed with another is a ValueError, for both one-liners."""
    pytest.importorskip("lightning.pytorch")
    from deterministic.lightning import SeededTraining
    from deterministic.transformers import seed_training

    checkpoint: dict[str, Any] = {}
    SeededTraining(1).on_save_checkpoint(None, None, checkpoint)
    with pytest.raises(ValueError, match=r"SeededTraining\(1\).*SeededTraining\(2\)"):
        SeededTraining(2).on_load_checkpoint(None, None, checkpoint)
    first = seed_training(trainer(tmp_path / "a", evaluate=False), 1)
    first.get_train_dataloader()
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    first._load_rng_state.__self__.save(str(folder))
    second = seed_training(trainer(tmp_path / "b", evaluate=False), 2)
    with pytest.raises(ValueError, match="seed_training"):
        second._load_rng_state(str(folder))
