"""Train the tiny models on the synthetic suite, so the offline default has real signal.

``train(TrainConfig(family="llava"))`` builds the random tiny model of a family (``FAMILIES[f].build_tiny``)
and trains every parameter (vision tower, projector, language model) with teacher forcing on
``prompt + answer + EOS``, the loss on the answer tokens only. Inputs go through the benchmark's own path
(``adapter.build_inputs``), and held-out accuracy is measured the way the runner measures it: greedy
``adapter.generate`` on the synthetic *test* split, scored by ``spec.score``.

Training data stream from the synthetic *train* split: chunk ``k`` is ``data.load("synthetic",
split="train", limit=chunk_per_dimension, seed=seed * 1_000_000 + k)``, shuffled by a seeded generator. Every
sample is a pure function of (split, seed, dimension, index), so the stream never repeats a sample, never
touches the test split, and is the same on every run. With a fixed thread count the run is reproducible.

``device="cuda"`` runs the same recipe on a GPU with batches of 32 (``CUDA_BATCH_SIZE``) and
``CUDA_STEPS`` steps; drawing and encoding the images then costs more than the model, so ``workers`` processes
(one pool per dimension, each worker taking every ``workers``-th chunk) prepare them. The chunks come back in
order, so the sample stream is the same for any number of workers.

``save_trained`` writes a ``save_pretrained`` folder (weights in float16, so each family stays far below
10 MB) and records the sha256 of every file, the command and the held-out accuracy in ``MANIFEST.json``
next to the family folders; ``load_model("tiny:<family>")`` loads it back as float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import shlex
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from transformers.utils import logging as hf_logging

from . import data
from .models import FAMILIES, FamilyAdapter, load_model
from .models.loading import TINY_BUILD_VERSION, TRAINED_DIR

# Tokens that are right-padded in a batch, with their padding value (None: the tokenizer's pad id).
_TOKEN_KEYS: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "labels": -100}
IGNORE = -100  # label of every token that is not part of the answer


# Optimizer steps per family that fit about 16 minutes on 2 free CPU cores (the budget is 20): a
# step costs ~0.23 s for LLaVA (144 ViT patches) and ~0.37-0.40 s for InternVL / Qwen (576 patches).
BUDGET_STEPS = {"llava": 4000, "internvl": 2600, "qwen2_5_vl": 2400}
CPU_BATCH_SIZE = 8
# On a GPU: 4x larger batches and enough steps for 8-13x the CPU budget's samples (256,000 per family), the
# "ten times the training budget" docs/tiny-models.md estimated the recalibrated suite needs; a few minutes
# per family on one H100-class GPU, bound by the workers drawing the images.
CUDA_BATCH_SIZE = 32
CUDA_STEPS = 8000


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are the recipe (docs/tiny-models.md); MANIFEST.json records what each shipped family ran."""

    family: str  # llava | internvl | qwen2_5_vl
    steps: int | None = None  # optimizer steps; None = the family's BUDGET_STEPS (CPU) or CUDA_STEPS (GPU)
    batch_size: int | None = None  # samples per step; None = CPU_BATCH_SIZE (CPU) or CUDA_BATCH_SIZE (GPU)
    lr: float = 3e-3  # peak AdamW learning rate
    warmup: int = 100  # linear warm-up steps, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0  # seeds the initial weights (build_tiny) and the data stream
    chunk_per_dimension: int = 12  # samples per dimension per streamed chunk (a multiple of 12 balances sub-tasks)
    eval_every: int = 500  # steps between held-out evaluations (0 = only at the end)
    eval_per_dimension: int = 10  # held-out test samples per dimension for the periodic evaluations
    log_every: int = 100  # steps between loss lines
    threads: int = 2  # torch intra-op threads; results are reproducible for a fixed count
    device: str = "cpu"  # cpu | cuda | cuda:<index>
    workers: int = 0  # processes drawing and encoding the training images (0 = in the training process)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        if self.device != "cpu" and not (self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"unknown device {self.device!r}; expected cpu, cuda or cuda:<index>")
        on_gpu = self.device != "cpu"
        if self.steps is None:
            object.__setattr__(self, "steps", CUDA_STEPS if on_gpu else BUDGET_STEPS[self.family])
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", CUDA_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE)
        if self.steps < 1:
            raise ValueError(f"steps must be a positive number of optimizer steps, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of samples, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (no worker processes) or more, got {self.workers}")


@dataclass
class TrainResult:
    """What ``train`` did: the trained adapter, per-step losses, evaluations and wall time."""

    config: TrainConfig
    adapter: FamilyAdapter
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # {"step", **per-dimension accuracy, "mean"}
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------- data
Item = dict[str, torch.Tensor]  # one encoded sample (``encode``): model inputs of batch size 1 with labels


def train_chunk(config: TrainConfig, dimension: str, chunk: int) -> list[data.Sample]:
    """Chunk ``chunk`` of one dimension's training stream: a fresh draw with seed ``config.seed * 1_000_000 +
    chunk``, so training never repeats a sample and never sees the test split."""
    seed, limit = config.seed * 1_000_000 + chunk, config.chunk_per_dimension
    return data.load("synthetic", split="train", limit=limit, seed=seed, dimension=dimension)


def dimension_stream(config: TrainConfig, dimension: str) -> Iterator[data.Sample]:
    """Endless, seeded stream of train-split samples of one dimension, shuffled within each chunk."""
    rng = random.Random(f"{config.seed}|{dimension}")
    for chunk in itertools.count():
        samples = train_chunk(config, dimension, chunk)
        rng.shuffle(samples)
        yield from samples


class _EncodedChunks(torch.utils.data.IterableDataset):
    """One dimension's chunks, encoded on CPU; worker ``w`` of ``n`` makes chunks ``w, w + n, ...``.

    A ``DataLoader`` takes one item from each worker in turn, so the chunks arrive in order 0, 1, 2, ...
    whatever the number of workers.
    """

    def __init__(self, config: TrainConfig, dimension: str):
        self.config, self.dimension = config, dimension

    def __iter__(self) -> Iterator[list[Item]]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        family = FAMILIES[self.config.family]
        model, processor = family.build_tiny(self.config.seed)  # a CPU adapter: only its input building is used
        adapter, spec = family.adapter_class(model, processor, f"tiny:{self.config.family}"), data.get("synthetic")
        for chunk in itertools.count(worker, n_workers):
            yield [encode(adapter, spec, sample) for sample in train_chunk(self.config, self.dimension, chunk)]


def encoded_stream(
    config: TrainConfig, dimension: str, adapter: FamilyAdapter, spec: data.DatasetSpec, workers: int = 0
) -> Iterator[Item]:
    """``dimension_stream`` encoded for training: in this process, or by ``workers`` processes ahead of use.

    Either way the items come in the same order (chunks in order, shuffled by the same generator).
    """
    if workers == 0:
        for sample in dimension_stream(config, dimension):
            yield encode(adapter, spec, sample)
        return
    rng = random.Random(f"{config.seed}|{dimension}")
    # A process forked from one that holds a CUDA context must not touch CUDA; spawned workers start clean.
    context = "spawn" if config.device != "cpu" else None
    loader = torch.utils.data.DataLoader(
        _EncodedChunks(config, dimension),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4,
        multiprocessing_context=context,
    )
    for items in loader:
        rng.shuffle(items)
        yield from items


class BalancedBatches:
    """Batches whose dimensions are drawn in proportion to how often the model still gets them wrong.

    The error rate is the share of a dimension's recent training samples whose answer is not reproduced
    exactly under teacher forcing (argmax at every answer token): scale-free, so a yes/no dimension at chance
    (error 0.5) weighs as much as it should next to a 22-way OCR dimension at chance (error ~1), which a loss
    would not give. A solved dimension keeps ``floor`` so it is still rehearsed; until a dimension has been
    seen it weighs 1.
    """

    def __init__(
        self,
        config: TrainConfig,
        adapter: FamilyAdapter,
        spec: data.DatasetSpec,
        floor: float = 0.1,
        momentum: float = 0.95,
    ):
        self.config, self.floor, self.momentum = config, floor, momentum
        per_dimension = -(-config.workers // len(data.DIMENSIONS))  # ceil: every pool gets a worker
        self.streams = {dim: encoded_stream(config, dim, adapter, spec, per_dimension) for dim in data.DIMENSIONS}
        self.error: dict[str, float] = {}
        self.rng = random.Random(config.seed)

    def weights(self) -> list[float]:
        return [max(self.error.get(dim, 1.0), self.floor) for dim in self.streams]

    def update(self, dimensions: list[str], correct: list[bool]) -> None:
        """Fold a step's per-sample teacher-forced exact matches into each dimension's moving error rate."""
        for dimension, ok in zip(dimensions, correct, strict=True):
            old = self.error.get(dimension, 1.0)
            self.error[dimension] = self.momentum * old + (1 - self.momentum) * (not ok)

    def close(self) -> None:
        """Stop the streams now (their worker processes, if any) rather than at interpreter exit."""
        for stream in self.streams.values():
            stream.close()

    def __iter__(self) -> Iterator[tuple[list[str], list[Item]]]:
        """Endless batches as (dimension of each sample, encoded samples)."""
        while True:
            dims = self.rng.choices(list(self.streams), weights=self.weights(), k=self.config.batch_size)
            yield dims, [next(self.streams[dim]) for dim in dims]


def encode(adapter: FamilyAdapter, spec: data.DatasetSpec, sample: data.Sample) -> dict[str, torch.Tensor]:
    """One sample as model inputs of batch size 1: the inference prompt followed by ``answer + EOS``.

    The prompt is built exactly as at evaluation (``build_inputs``), and the answer ids are appended, not
    tokenized together with the prompt, so training sees the very ids that greedy decoding must produce.
    """
    inputs = adapter.build_inputs(sample.images, spec.to_prompt(sample))
    tok = adapter.tokenizer
    ids = [*tok(sample.answer, add_special_tokens=False)["input_ids"], tok.eos_token_id]
    answer = torch.tensor([ids], device=inputs["input_ids"].device)
    item = dict(inputs)
    item["input_ids"] = torch.cat([inputs["input_ids"], answer], dim=1)
    item["attention_mask"] = torch.ones_like(item["input_ids"])
    if "mm_token_type_ids" in inputs:  # answer tokens are text (type 0)
        item["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(answer)], dim=1)
    item["labels"] = torch.cat([torch.full_like(inputs["input_ids"], IGNORE), answer], dim=1)
    return item


def collate(items: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the token tensors; concatenate the image tensors along their first axis.

    Concatenation serves every family: LLaVA/InternVL pixel values are ``[images, 3, H, W]``, Qwen's are
    flattened patches ``[patches, C]`` with ``image_grid_thw`` ``[images, 3]`` saying which rows are whose.
    """
    length = max(item["input_ids"].shape[1] for item in items)
    batch = {}
    for key in items[0]:
        if key in _TOKEN_KEYS:
            value = pad_id if _TOKEN_KEYS[key] is None else _TOKEN_KEYS[key]
            batch[key] = torch.cat([F.pad(item[key], (0, length - item[key].shape[1]), value=value) for item in items])
        else:
            batch[key] = torch.cat([item[key] for item in items])
    return batch


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy on the answer tokens (prompt and padding ignored).

    Returns the mean over all answer tokens of the batch (what is minimised) and, per sample, whether the
    argmax reproduces every answer token (a detached bool: teacher-forced exact match, for balancing and logs).
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    answer = labels != IGNORE
    loss = F.cross_entropy(logits[answer].float(), labels[answer])
    exact = ((logits.argmax(-1) == labels) | ~answer).all(1)
    return loss, exact.detach()


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate(adapter: FamilyAdapter, samples: list[data.Sample], spec: data.DatasetSpec | None = None) -> dict:
    """Accuracy per dimension (and their mean, ``"mean"``) through the runner's path: greedy generate + score."""
    spec = spec or data.get("synthetic")
    training = adapter.model.training
    adapter.model.eval()
    scores: dict[str, list[float]] = defaultdict(list)
    try:
        for sample in samples:
            out = adapter.generate(adapter.build_inputs(sample.images, spec.to_prompt(sample)), spec.max_new_tokens)
            scores[sample.dimension].append(float(spec.score(sample, out.text).correct))
    finally:
        adapter.model.train(training)
    accuracy = {dim: sum(v) / len(v) for dim, v in scores.items()}
    accuracy["mean"] = sum(accuracy.values()) / max(len(accuracy), 1)
    return accuracy


def format_accuracy(accuracy: dict[str, float]) -> str:
    return " ".join(f"{dim}={value:.2f}" for dim, value in accuracy.items())


# ----------------------------------------------------------------------------------------------- training
def _lr_factor(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train(
    config: TrainConfig,
    *,
    batches: Iterable[list[data.Sample]] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the tiny ``config.family`` model from its seeded random initialisation.

    Parameters
    ----------
    config
        Hyper-parameters (the defaults made the shipped weights).
    batches
        Batches of samples to train on instead of the streamed train split (tests pass a fixed batch); at
        most ``config.steps`` of them are used.
    log
        Receives one line per ``log_every`` steps and per evaluation.
    """
    with torch_threads(config.threads):
        return _train(config, batches, log)


def require_device(device: str) -> None:
    """Fail early, naming the device, when a CUDA device is asked for and torch sees none."""
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA device; use --device cpu")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (results are reproducible for a fixed count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(config: TrainConfig, batches: Iterable[list[data.Sample]] | None, log: Callable[[str], None]) -> TrainResult:
    require_device(config.device)
    family = FAMILIES[config.family]
    model, processor = family.build_tiny(config.seed)  # seeds torch itself, on CPU, so every device starts alike
    model.float().to(config.device)
    adapter = family.adapter_class(model, processor, f"tiny:{config.family}")
    spec = data.get("synthetic")
    heldout = data.load("synthetic", split="test", limit=config.eval_per_dimension) if config.eval_every else []
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))
    result = TrainResult(config, adapter)
    pad_id = adapter.tokenizer.pad_token_id
    balanced = BalancedBatches(config, adapter, spec) if batches is None else None
    if balanced is not None:
        stream: Iterable[tuple[list[str], list[Item]]] = balanced
    else:
        stream = (([s.dimension for s in samples], [encode(adapter, spec, s) for s in samples]) for samples in batches)
    dimension_hits: dict[str, list[bool]] = defaultdict(list)  # teacher-forced exact matches since the last log
    model.train()
    start = time.perf_counter()
    try:
        for step, (dimensions, items) in enumerate(itertools.islice(stream, config.steps), start=1):
            batch = {key: value.to(config.device) for key, value in collate(items, pad_id).items()}
            loss, exact = answer_loss(model, batch)
            hits = exact.tolist()
            for dimension, hit in zip(dimensions, hits, strict=True):
                dimension_hits[dimension].append(hit)
            if balanced is not None:
                balanced.update(dimensions, hits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            result.losses.append(loss.item())
            if config.log_every and step % config.log_every == 0:
                recent = result.losses[-config.log_every :]
                # Teacher-forced exact match per dimension (how many samples of each the batches drew).
                per_dim = " ".join(f"{d[:4]}={sum(v) / len(v):.2f}/{len(v)}" for d, v in sorted(dimension_hits.items()))
                log(f"step {step:5d}  loss {sum(recent) / len(recent):.4f}  lr {scheduler.get_last_lr()[0]:.2e}  "
                    f"{time.perf_counter() - start:6.0f}s  [{per_dim}]")  # fmt: skip
                dimension_hits.clear()
            if heldout and config.eval_every and step % config.eval_every == 0 and step < config.steps:
                accuracy = evaluate(adapter, heldout, spec)
                result.evaluations.append({"step": step, **accuracy})
                log(f"step {step:5d}  held-out ({config.eval_per_dimension}/dimension)  {format_accuracy(accuracy)}")
    finally:
        if balanced is not None:
            balanced.close()
    result.seconds = time.perf_counter() - start
    model.eval()
    if heldout:
        accuracy = evaluate(adapter, heldout, spec)
        result.evaluations.append({"step": len(result.losses), **accuracy})
        log(f"final  held-out ({config.eval_per_dimension}/dimension)  {format_accuracy(accuracy)}")
    return result


# ----------------------------------------------------------------------------------------------- shipping
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_trained(result: TrainResult, out_dir: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the trained model and its processor as one ``save_pretrained`` folder (weights in ``dtype``).

    float16 halves the file (about 3 MB per family) and costs nothing measurable: ``load_model`` casts the
    weights back to float32 on CPU, and the shipped accuracy is measured after that round trip.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # a folder holds exactly one model: no leftovers from an older save
        if stale.is_file():
            stale.unlink()
    model = result.adapter.model
    original = next(model.parameters()).dtype
    model.to(dtype)
    hf_logging.disable_progress_bar()  # a "writing shards" bar per save adds nothing to the training log
    try:
        model.save_pretrained(out)
    finally:
        model.to(original)
    result.adapter.processor.save_pretrained(out)
    return out


def update_manifest(path: Path, family: str, entry: dict[str, Any]) -> None:
    """Set one family's entry, keeping the others; written atomically (rename) so a reader never sees half."""
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[family] = entry
    fd, tmp = tempfile.mkstemp(prefix=".MANIFEST-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(sorted(manifest.items())), fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def train_command(config: TrainConfig, out_dir: Path | None = None) -> str:
    """The ``unipb train-tiny`` command line that reproduces ``config`` (every flag spelled out)."""
    argv = ["train-tiny", "--family", config.family, "--steps", str(config.steps), "--seed", str(config.seed)]
    argv += ["--threads", str(config.threads)]
    if config.device != "cpu":
        argv += ["--device", config.device]
    if config.batch_size != (CPU_BATCH_SIZE if config.device == "cpu" else CUDA_BATCH_SIZE):
        argv += ["--batch-size", str(config.batch_size)]
    if config.workers:  # speed only: the sample stream is the same for any number of workers
        argv += ["--workers", str(config.workers)]
    if out_dir is not None and Path(out_dir).resolve() != (TRAINED_DIR / config.family).resolve():
        argv += ["--out", str(out_dir)]
    return "unipb " + shlex.join(argv)


def train_and_ship(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    test_per_dimension: int = 50,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, save the folder, reload it the way ``tiny:<family>`` does, measure held-out accuracy, record all.

    Parameters
    ----------
    config
        Training settings (the defaults made the shipped weights).
    out_dir
        The family folder; defaults to the shipped one, ``unipb_core/models/weights/<family>``. The manifest is
        ``MANIFEST.json`` in its parent.
    test_per_dimension
        Synthetic test samples per dimension for the recorded accuracy (50 is the report's test split).

    Returns
    -------
    The manifest entry: file hashes, command, config, training time, final loss and per-dimension accuracy.
    """
    out = Path(out_dir) if out_dir is not None else TRAINED_DIR / config.family
    result = train(config, log=log)
    save_trained(result, out)
    with torch_threads(config.threads):
        shipped = load_model(str(out), device="cpu")  # float16 on disk -> float32, exactly what tiny: loads
        test = data.load("synthetic", split="test", limit=test_per_dimension)
        accuracy = evaluate(shipped, test)
    log(f"shipped {out}  test ({test_per_dimension}/dimension)  {format_accuracy(accuracy)}")
    last = result.losses[-100:]
    entry = {
        "files": {p.name: sha256(p) for p in sorted(out.iterdir()) if p.is_file()},
        "command": train_command(config, out),
        "config": asdict(config),
        "tiny_build_version": TINY_BUILD_VERSION,
        "parameters": sum(p.numel() for p in shipped.model.parameters()),
        "stored_dtype": "float16",
        "device": torch.cuda.get_device_name(config.device) if config.device != "cpu" else "cpu",
        "train_seconds": round(result.seconds, 1),
        "final_loss": round(sum(last) / max(len(last), 1), 4),
        "test_per_dimension": test_per_dimension,
        "test_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    update_manifest(out.parent / "MANIFEST.json", config.family, entry)
    return entry
