"""A small CLIP tokenizer learned from a caption corpus (for models trained from scratch, not fine-tunes).

Fine-tunes of Stable Diffusion keep the tokenizer they came with. A model trained here from scratch has no
published vocabulary to reuse, so we learn a byte-pair vocabulary with `tokenizers` in CLIP's layout
(lower-cased words, `</w>` end-of-word suffix, `<|startoftext|>` / `<|endoftext|>`): every caption word becomes
one token and any other text still tokenizes, character by character.
"""
from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Iterable

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_clip_tokenizer(captions: Iterable[str], max_length: int = 32):
    """A `CLIPTokenizer` whose vocabulary holds every character and every word of `captions`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    corpus = [c.lower() for c in captions]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)
    trainer = trainers.BpeTrainer(vocab_size=100_000, min_frequency=1, special_tokens=[BOS, EOS],
                                  initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False)
    bpe.train_from_iterator(corpus + [" ".join(alphabet)], trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    for ch in alphabet:  # a word may end in any character
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                             model_max_length=max_length, pad_token=EOS, bos_token=BOS, eos_token=EOS,
                             unk_token=EOS)
