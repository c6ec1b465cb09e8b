"""Random-initialised tiny models (``tiny-causal``, ``tiny-seq2seq``) with a byte tokenizer.

They exist for tests, CI and benchmarks: built from a config in milliseconds, no download, and
small enough that a full fine-tune on the 3-record sample memorises it in seconds on a CPU.
The tokenizer maps every byte to one token (a byte-level BPE with no merges), so any text
round-trips exactly and the tokenizer is the same on every machine.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_CAUSAL",
    "TINY_SEQ2SEQ",
    "build_byte_backend",
    "build_byte_tokenizer",
    "build_tiny_model",
    "tiny_config",
]

TINY_CAUSAL = "tiny-causal"
TINY_SEQ2SEQ = "tiny-seq2seq"

# Fixed ids: pad 0, eos 1, unk 2, bos 3; the 256 bytes follow (ids 4..259).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "</s>", "<unk>", "<s>")
PAD_ID, EOS_ID, UNK_ID, BOS_ID = 0, 1, 2, 3
VOCAB_SIZE = len(SPECIAL_TOKENS) + 256

# Small enough to train 300 steps in seconds on 2 CPU cores, big enough to memorise the sample.
_HIDDEN = 64
_LAYERS = 2
_HEADS = 4
_FFN = 128
_MAX_POSITIONS = 1024


def build_byte_tokenizer(architecture: str = "causal") -> Any:
    """A deterministic byte-level tokenizer wrapped as a ``PreTrainedTokenizerFast``.

    ``causal`` prepends ``<s>`` (like Llama); ``seq2seq`` appends ``</s>`` to the encoder input
    (like T5). The post-processor lives in ``tokenizer.json``, so the plain ``tokenizers``
    library (used by the ONNX service) encodes exactly as transformers does.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=build_byte_backend(architecture),
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        model_max_length=_MAX_POSITIONS,
        padding_side="right",
    )


def build_byte_backend(architecture: str = "causal") -> Any:
    """The ``tokenizers.Tokenizer`` behind :func:`build_byte_tokenizer` (no transformers needed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for char in byte_chars:
        vocab[char] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    if architecture == "seq2seq":
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", EOS_ID)]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
        )
    return tok


def _byte_of(char: str) -> int:
    """Order the ByteLevel alphabet by the byte each character stands for (GPT-2 mapping)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    code = ord(char)
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


def tiny_config(name: str) -> Any:
    """The transformers config of ``tiny-causal`` (Llama) or ``tiny-seq2seq`` (T5)."""
    if name == TINY_CAUSAL:
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=_HIDDEN,
            intermediate_size=_FFN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            num_key_value_heads=_HEADS,
            max_position_embeddings=_MAX_POSITIONS,
            pad_token_id=PAD_ID,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            tie_word_embeddings=False,
        )
    if name == TINY_SEQ2SEQ:
        from transformers import T5Config

        return T5Config(
            vocab_size=VOCAB_SIZE,
            d_model=_HIDDEN,
            d_kv=_HIDDEN // _HEADS,
            d_ff=_FFN,
            num_layers=_LAYERS,
            num_decoder_layers=_LAYERS,
            num_heads=_HEADS,
            relative_attention_num_buckets=32,
            dropout_rate=0.0,
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            decoder_start_token_id=PAD_ID,
            tie_word_embeddings=False,
        )
    raise ValueError(f"not a tiny model: {name!r}")


def build_tiny_model(name: str, seed: int = 0) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for a tiny model, initialised deterministically from ``seed``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, GenerationConfig

    config = tiny_config(name)
    seq2seq = name == TINY_SEQ2SEQ
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        model = auto.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        bos_token_id=None if seq2seq else BOS_ID,
        decoder_start_token_id=PAD_ID if seq2seq else None,
    )
    tokenizer = build_byte_tokenizer("seq2seq" if seq2seq else "causal")
    logger.debug("built %s with %d parameters", name, sum(p.numel() for p in model.parameters()))
    return model, tokenizer
