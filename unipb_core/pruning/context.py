"""``PruneContext``: everything a method may look at for one stage of one sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .attention import attention_rows, keys, query_key


@dataclass(frozen=True)
class LayerInput:
    """A decoder layer's prefill input as the engine saw it (references, not copies)."""

    layer: torch.nn.Module
    hidden: torch.Tensor  # [1, L, D]
    position_embeddings: tuple[torch.Tensor, torch.Tensor]
    attention_mask: torch.Tensor | None
    visual_positions: torch.Tensor  # [N] positions of the visual tokens in this sequence
    text_positions: torch.Tensor


def instruction_positions(*inputs: LayerInput) -> list[torch.Tensor]:
    """Positions of the tokens after the last visual token (the instruction) of each layer input; when the image
    ends the prompt, the last token alone.

    They are a suffix of the sorted text positions, so one host read of their counts serves every input (a
    boolean mask would cost one read each).
    """
    counts = torch.stack([(li.text_positions > li.visual_positions.max()).sum() for li in inputs]).tolist()
    return [li.text_positions[li.text_positions.numel() - n :] if n else li.text_positions[-1:]
            for li, n in zip(inputs, counts, strict=True)]  # fmt: skip


@dataclass
class PruneContext:
    """The tensors of one stage, handed to ``method.select``.

    Attributes
    ----------
    stage : Stage
        ``kind`` ("pre"/"intra"), ``layer`` and ``n_keep``.
    visual : Tensor ``[N, D]``
        Visual tokens at this stage: projected features (pre) or the hidden states entering ``layer``.
    text : Tensor ``[T, D]``
        The other tokens at this stage, in sequence order.
    visual_positions, text_positions : LongTensor
        Where those tokens sit in the current sequence.
    visual_origin : LongTensor ``[N]``
        Index of each visual token in the sample's original visual-token list (for patch grids).
    grids : list of (rows, cols)
        Patch grid of each image's visual tokens, in the original token order.
    generator : torch.Generator
        Seeded by the run's seed and the sample: the only source of randomness a method may use.
    layer_inputs : dict
        ``{layer_index: LayerInput}`` captured during this prefill (intra stages: ``layer`` and ``layer - 1``).
    vision : dict
        Lazily computed vision-side extras, filled by the engine from the family adapter when the method sets
        ``needs_vision_attention``: ``"encoder_attention"`` -> ``models.vision_attention.VisionAttention``
        over the sample's original visual tokens (use ``encoder_scores`` / ``encoder_keys``); and, when it sets
        ``needs_vision_input``, ``"downsampled"`` -> ``models.resized.Downsampled`` (where the tokens of the images,
        resized before the vision pass, belong; the tokens are the first visual rows).
    final_norm : Module, optional
        The decoder stack's final norm (``language_model.norm``); DART's cosines use it, as its authors' code.
    """

    stage: Any
    family: str
    visual: torch.Tensor
    text: torch.Tensor
    visual_positions: torch.Tensor
    text_positions: torch.Tensor
    visual_origin: torch.Tensor
    grids: list[tuple[int, int]]
    generator: torch.Generator
    num_layers: int
    layer_inputs: dict[int, LayerInput] = field(default_factory=dict)
    vision: dict[str, Callable[[], Any]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    final_norm: torch.nn.Module | None = None

    @property
    def n_keep(self) -> int:
        return self.stage.n_keep

    @property
    def n_visual(self) -> int:
        return self.visual.shape[0]

    def _layer_input(self, layer: int | None) -> LayerInput:
        layer = self.stage.layer if layer is None else layer
        if layer not in self.layer_inputs:
            raise KeyError(
                f"no captured input for decoder layer {layer} at stage {self.stage.label}; "
                f"available: {sorted(self.layer_inputs)} (attention exists only for intra-LLM stages)"
            )
        return self.layer_inputs[layer]

    def query_rows(self, queries: str, layer: int | None = None) -> torch.Tensor:
        """Positions of the query tokens: ``"last"``, ``"text"`` (non-visual) or ``"all"``."""
        li = self._layer_input(layer)
        n = li.hidden.shape[1]
        if queries == "last":
            return torch.tensor([n - 1], device=li.hidden.device)
        if queries == "text":
            return li.text_positions
        if queries == "all":
            return torch.arange(n, device=li.hidden.device)
        raise ValueError(f"queries must be 'last', 'text' or 'all', got {queries!r}")

    def attention(self, rows: torch.Tensor | str = "last", layer: int | None = None) -> torch.Tensor:
        """Attention probabilities ``[H, R, L]`` at ``layer`` (default: this stage's layer) for query ``rows``.

        Computed from the layer's own q/k for just those rows, so SDPA stays on for the model. Column
        ``j`` is a position in that layer's input sequence (``layer_inputs[layer].visual_positions``
        says which are visual).
        """
        li = self._layer_input(layer)
        if isinstance(rows, str):
            rows = None if rows == "all" else self.query_rows(rows, layer)  # None: every row, without a gather
        return attention_rows(li.layer, li.hidden, li.position_embeddings, rows, li.attention_mask)

    def received_attention(self, queries: str = "all", layer: int | None = None) -> torch.Tensor:
        """Attention each visual token of this stage receives, averaged over heads and query rows: ``[N]``."""
        li = self._layer_input(layer)
        probs = self.attention(queries, layer)  # [H, R, L]
        return probs.mean(dim=(0, 1))[li.visual_positions].to(self.visual.dtype)

    def query_key(self, layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Post-RoPE queries and keys ``[H, L, d]`` of every token at ``layer``'s input."""
        li = self._layer_input(layer)
        return query_key(li.layer, li.hidden, li.position_embeddings)

    def keys(self, layer: int | None = None) -> torch.Tensor:
        """Post-RoPE keys ``[H, L, d]`` of every token at ``layer``'s input (no query projection)."""
        li = self._layer_input(layer)
        return keys(li.layer, li.hidden, li.position_embeddings)

    def _encoder_attention(self):
        if "encoder_attention" not in self.vision:
            raise KeyError("no vision-encoder attention in this context: the method must set needs_vision_attention")
        return self.vision["encoder_attention"]()

    def encoder_scores(self) -> torch.Tensor:
        """Vision-encoder attention score of each visual token of this stage ([CLS] attention, see adapters)."""
        return self._encoder_attention().scores[self.visual_origin.to(self.visual.device)].to(self.visual.device)

    def encoder_keys(self) -> torch.Tensor:
        """Vision-encoder keys (feature layer, heads concatenated) of each visual token of this stage: ``[N, Dk]``."""
        return self._encoder_attention().keys[self.visual_origin.to(self.visual.device)].to(self.visual.device)
