"""An offline byte-level BPE tokenizer for the tiny models.

Real checkpoints ship their tokenizers; tiny models cannot download one, so we train a small
byte-level BPE on a fixed corpus (deterministic: the ``tokenizers`` trainer is single-pass and
order-preserving on one thread) and add each family's special tokens as atomic tokens.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Words the synthetic suite and the prompts use, so they tokenize into few pieces.
_CORPUS_WORDS = """
yes no Yes No answer question image picture the a an is are there in of on to with what which how many
colour color shape circle square triangle star cross red green blue yellow black white orange purple
left right above below top bottom count number sum total letter word text read write uppercase lowercase
option options choose select from given choices directly single phrase Answer the question using
Please answer yes or no . , ? ! : ; ( ) A. B. C. D. E. Hint Question Options Context chart bar tallest
shortest value table larger smaller than more less equal one two three four five six seven eight nine zero
""".split()
_CORPUS = (
    _CORPUS_WORDS
    + list(string.ascii_letters)
    + list(string.digits)
    + [" ".join(_CORPUS_WORDS[i : i + 8]) for i in range(0, len(_CORPUS_WORDS), 8)]
)


def build_tokenizer(
    special_tokens: list[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str | None,
    vocab_size: int = 640,
    extra_special_tokens: dict[str, str] | None = None,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """Train a tiny byte-level BPE and wrap it as a ``PreTrainedTokenizerFast``.

    Parameters
    ----------
    special_tokens
        Every token that must stay atomic (image placeholders, chat markers, bos/eos/pad).
    bos, eos, pad, unk
        Which of ``special_tokens`` play those roles (``bos``/``unk`` may be None).
    extra_special_tokens
        Named tokens some processors read as tokenizer attributes (InternVL's image markers).
    """
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS, trainer=trainer)
    kwargs: dict = {"eos_token": eos, "pad_token": pad}
    if bos is not None:
        kwargs["bos_token"] = bos
    if unk is not None:
        kwargs["unk_token"] = unk
    if extra_special_tokens:
        kwargs["extra_special_tokens"] = extra_special_tokens
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **kwargs)
    tok.add_special_tokens({"additional_special_tokens": [t for t in special_tokens if t not in (bos, eos, pad, unk)]})
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok
