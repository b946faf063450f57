"""Tiny-model training and the shipped trained weights: manifest hashes, a loss that falls, an accuracy floor."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FAMILY_NAMES

from unipb_core import data
from unipb_core.models import FAMILIES, MissingWeightsError, load_model, loading
from unipb_core.training import (
    BUDGET_STEPS,
    CUDA_BATCH_SIZE,
    CUDA_STEPS,
    TrainConfig,
    evaluate,
    sha256,
    train,
    train_command,
)

MANIFEST = loading.TRAINED_DIR / "MANIFEST.json"
MAX_WEIGHTS_BYTES = 10 * 1024 * 1024
# The documented unpruned accuracy (docs/tiny-models.md: means 0.55-0.65 on 50 test samples per dimension of
# suite v3; a model that reads the question but not the image scores 0.32) is checked on a small subset
# (where the shipped models score 0.53-0.57) against floors set below it, so that a few flipped answers on
# another platform never fail the test. Instruction following (colour and format) is what every family
# learned best (0.83-1.00 on the subset; the format alone scores 0.58); OCR, the dimension the study finds
# most fragile, is read from the image by every family (0.42-0.58 on the subset; chance 0.10).
MEAN_FLOOR = 0.45
INSTRUCTION_FLOOR = 0.70
OCR_FLOOR = 0.25
FLOOR_PER_DIMENSION = 12  # test samples per dimension for the floor check (72 per family)


def _fixed_batch(n: int = 4) -> list[data.Sample]:
    samples = data.load("synthetic", split="train", limit=1, seed=7)  # one sample of each of the six dimensions
    return samples[:n]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_shipped_weights_match_the_manifest(family):
    entry = json.loads(MANIFEST.read_text())[family]
    folder = loading.TRAINED_DIR / family
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(entry["files"])
    for name, digest in entry["files"].items():
        assert sha256(folder / name) == digest, f"{family}/{name} differs from MANIFEST.json"
    for weights in folder.glob("*.safetensors"):
        assert weights.stat().st_size <= MAX_WEIGHTS_BYTES
    assert entry["command"].startswith(f"unipb train-tiny --family {family}")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_few_steps_lower_the_loss(family):
    config = TrainConfig(family=family, steps=6, batch_size=4, lr=1e-3, warmup=1, eval_every=0, log_every=0)
    batch = _fixed_batch()
    result = train(config, batches=[batch] * config.steps, log=lambda line: None)
    assert len(result.losses) == config.steps
    assert result.losses[-1] < 0.8 * result.losses[0]


def test_training_is_reproducible():
    config = TrainConfig(family="llava", steps=3, batch_size=2, warmup=1, eval_every=0, log_every=0)
    batch = _fixed_batch(2)
    first = train(config, batches=[batch] * 3, log=lambda line: None)
    second = train(config, batches=[batch] * 3, log=lambda line: None)
    assert first.losses == second.losses
    a, b = first.adapter.model.state_dict(), second.adapter.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_shipped_model_clears_the_accuracy_floor(family):
    model = load_model(f"tiny:{family}", device="cpu")
    assert type(model.model) is FAMILIES[family].model_class
    assert model.dtype == torch.float32  # stored as float16, computed in float32
    samples = data.load("synthetic", split="test", limit=FLOOR_PER_DIMENSION)
    accuracy = evaluate(model, samples)
    assert accuracy["mean"] >= MEAN_FLOOR, accuracy
    assert accuracy["instruction"] >= INSTRUCTION_FLOOR, accuracy
    assert accuracy["ocr"] >= OCR_FLOOR, accuracy


def test_tiny_and_tiny_random_are_different_models():
    trained = load_model("tiny:llava", device="cpu").model.state_dict()
    random_init = load_model("tiny-random:llava", device="cpu").model.state_dict()
    assert trained.keys() == random_init.keys()
    assert any(not torch.equal(trained[k], random_init[k]) for k in trained)


def test_train_config_budgets_steps_per_family_and_rejects_bad_input():
    assert {f: TrainConfig(family=f).steps for f in FAMILIES} == BUDGET_STEPS
    assert train_command(TrainConfig(family="internvl")) == (
        f"unipb train-tiny --family internvl --steps {BUDGET_STEPS['internvl']} --seed 0 --threads 2"
    )
    with pytest.raises(ValueError, match=r"unknown family 'lava'; expected one of llava, internvl, qwen2_5_vl"):
        TrainConfig(family="lava")
    with pytest.raises(ValueError, match="steps must be a positive"):
        TrainConfig(family="llava", steps=0)
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; expected cpu, cuda or cuda:<index>"):
        TrainConfig(family="llava", device="gpu")
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        TrainConfig(family="llava", batch_size=0)
    with pytest.raises(ValueError, match="workers must be 0"):
        TrainConfig(family="llava", workers=-1)


def test_cuda_config_uses_bigger_batches_and_records_them():
    """The GPU recipe differs from the CPU one only in batch size and steps, and its command says so."""
    cpu, gpu = TrainConfig(family="qwen2_5_vl"), TrainConfig(family="qwen2_5_vl", device="cuda", workers=12)
    assert (cpu.batch_size, gpu.batch_size, gpu.steps) == (8, CUDA_BATCH_SIZE, CUDA_STEPS)
    same = {"family", "lr", "warmup", "min_lr_ratio", "weight_decay", "grad_clip", "seed", "chunk_per_dimension"}
    assert {k: getattr(cpu, k) for k in same} == {k: getattr(gpu, k) for k in same}
    assert train_command(gpu) == (
        f"unipb train-tiny --family qwen2_5_vl --steps {CUDA_STEPS} --seed 0 --threads 2 --device cuda --workers 12"
    )
    assert train_command(TrainConfig(family="llava", batch_size=16)).endswith("--threads 2 --batch-size 16")


def test_worker_processes_train_on_the_same_stream():
    """Images drawn by worker processes (the GPU path) arrive in the order the training process draws them."""
    config = TrainConfig(family="llava", steps=2, batch_size=3, chunk_per_dimension=2, eval_every=0, log_every=0)
    alone = train(config, log=lambda line: None)
    pooled = train(TrainConfig(**{**config.__dict__, "workers": 2}), log=lambda line: None)
    assert len(alone.losses) == 2 and alone.losses == pooled.losses


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    from unipb_core.cli import main

    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but this torch build sees no CUDA device"):
        train(TrainConfig(family="llava", device="cuda", steps=1), log=lambda line: None)
    assert main(["train-tiny", "--family", "llava", "--device", "cuda", "--steps", "1"]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_few_steps_lower_the_loss_on_cuda():
    config = TrainConfig(family="llava", device="cuda", steps=6, batch_size=4, lr=1e-3, warmup=1, eval_every=0)
    result = train(config, batches=[_fixed_batch()] * config.steps, log=lambda line: None)
    assert next(result.adapter.model.parameters()).device.type == "cuda"
    assert result.losses[-1] < 0.8 * result.losses[0]


def test_missing_shipped_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "TRAINED_DIR", tmp_path)
    with pytest.raises(MissingWeightsError, match=r"tiny:llava.*unipb train-tiny --family llava.*tiny-random:llava"):
        load_model("tiny:llava")


def test_train_tiny_cli_names_bad_input(capsys):
    from unipb_core.cli import main

    assert main(["train-tiny", "--family", "lava"]) == 2
    assert "unknown family 'lava'; expected one of llava, internvl, qwen2_5_vl" in capsys.readouterr().err
    assert main(["train-tiny", "--family", "llava", "--steps", "0"]) == 2
    assert "steps must be a positive" in capsys.readouterr().err
