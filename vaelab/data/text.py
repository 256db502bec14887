"""Text for sentence VAEs: the vocabulary, padded sentence tensors and the Penn Treebank."""
from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from .._checks import check_positive_int
from .files import fetch_file, file_version

__all__ = ['PTBCorpus', 'Sentences', 'Vocab', 'ptb']


class Vocab:
    """Word <-> id table for the Penn Treebank.

    Ids 0-3 are the specials ``<pad>``, ``<sos>``, ``<eos>``, ``<unk>``; the words of the
    training file follow by descending frequency, ties in alphabetical order, so the
    table is the same on every machine.

    Attributes:
        itos: list of words, indexed by id.
        stoi: dict from word to id.
        pad_id, sos_id, eos_id, unk_id: 0, 1, 2, 3.
    """

    SPECIALS = ("<pad>", "<sos>", "<eos>", "<unk>")
    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str]):
        """Build from the non-special words in id order (``words[0]`` gets id 4)."""
        if isinstance(words, str):
            raise ValueError("words must be a sequence of words, not one string")
        words = [w for w in words if w not in self.SPECIALS]
        self.itos: list[str] = [*self.SPECIALS, *words]
        self.stoi: dict[str, int] = {word: index for index, word in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("words must not contain duplicates; pass each word once, e.g. sorted(set(words))")

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]]) -> "Vocab":
        """Count words over ``sentences`` and order them by descending count, then alphabetically."""
        counts = collections.Counter(word for sentence in sentences for word in sentence)
        return cls(sorted(counts, key=lambda word: (-counts[word], word)))

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} entries)"

    def encode(self, words: Sequence[str]) -> list[int]:
        """Ids of ``words`` (a list of tokens); unknown words map to ``unk_id``. Adds no ``<sos>``/``<eos>``."""
        if isinstance(words, str):
            raise ValueError("words must be a list of words, e.g. sentence.split(), not one string")
        return [self.stoi.get(word, self.unk_id) for word in words]

    def decode(self, ids) -> list[str]:
        """Words of one row of ids (list or 1-D tensor): stops at ``<eos>``, skips ``<pad>`` and ``<sos>``."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be one row (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        words = []
        for index in ids:
            index = int(index)
            if not 0 <= index < len(self.itos):
                raise ValueError(f"ids must lie in [0, {len(self.itos) - 1}], got {index}")
            if index == self.eos_id:
                break
            if index not in (self.pad_id, self.sos_id):
                words.append(self.itos[index])
        return words


@dataclass(frozen=True, eq=False)
class Sentences:
    """One split of padded sentences.

    ``len(sentences)`` is ``N``, and ``sentences[:300]`` (a slice, or a 1-D tensor or
    list of row indices) is another :class:`Sentences` of those rows, in that order, padded
    to its own longest row.

    Attributes:
        tokens: ``(N, T)`` int64; row ``i`` is ``<sos> w_1 ... w_n <eos>`` followed by
            ``<pad>`` up to ``T``, the longest row of the split.
        lengths: ``(N,)`` int64, tokens per row including ``<sos>`` and ``<eos>`` (``n + 2``).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index) -> "Sentences":
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            raise ValueError(
                f"Sentences[{int(index)}] would drop the batch axis: take sentences[{int(index)}:{int(index) + 1}] for "
                f"a Sentences of one, or vocab.decode(sentences.tokens[{int(index)}]) for its words"
            )
        if not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.lengths.device)
            if index.dim() != 1 or index.dtype not in (torch.int64, torch.int32, torch.bool):
                raise ValueError(
                    "index Sentences with a slice (sentences[:300]) or a 1-D tensor or list of row indices; got "
                    f"{index.dtype} of shape {tuple(index.shape)}"
                )
        lengths = self.lengths[index]
        width = int(lengths.max()) if len(lengths) else 2
        return Sentences(self.tokens[index][:, :width], lengths)

    def __repr__(self) -> str:
        return f"Sentences({len(self)} sentences, tokens {tuple(self.tokens.shape)})"


@dataclass(frozen=True, eq=False)
class PTBCorpus:
    """The Penn Treebank in Mikolov's split.

    Attributes:
        vocab: built from the full training file (independent of ``max_length``).
        train, valid, test: the sentences of ``ptb.train.txt``, ``ptb.valid.txt`` and
            ``ptb.test.txt``, in file order.
        dropped: number of sentences left out of each split for exceeding ``max_length``.
    """

    vocab: Vocab
    train: Sentences
    valid: Sentences
    test: Sentences
    dropped: dict[str, int] = field(default_factory=dict)


_PTB_SPLITS = ("train", "valid", "test")


@functools.lru_cache(maxsize=8)
def _read_sentences(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, ...], ...]:
    with open(path, encoding="utf-8") as handle:
        return tuple(tuple(words) for words in (line.split() for line in handle) if words)


def _pack(
    vocab: Vocab, sentences: Sequence[Sequence[str]], max_length: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame, encode and pad the kept sentences: (tokens (N, T), lengths (N,), number dropped)."""
    kept = [s for s in sentences if max_length is None or len(s) <= max_length]
    lengths = np.fromiter((len(s) + 2 for s in kept), dtype=np.int64, count=len(kept))
    width = int(lengths.max()) if len(kept) else 2
    framed = (i for s in kept for i in (vocab.sos_id, *vocab.encode(s), vocab.eos_id))
    flat = np.fromiter(framed, dtype=np.int64, count=int(lengths.sum()))
    tokens = np.full((len(kept), width), vocab.pad_id, dtype=np.int64)
    tokens[np.arange(width)[None, :] < lengths[:, None]] = flat
    return tokens, lengths, len(sentences) - len(kept)


def ptb(*, root=None, max_length: int | None = None, device=None) -> PTBCorpus:
    """The Penn Treebank as preprocessed by Mikolov (``simple-examples``), for sentence VAEs.

    Each line of ``ptb.{train,valid,test}.txt`` is one sentence (10k-word vocabulary, rare
    words already ``<unk>``, numbers ``N``); empty lines are skipped. The split is the
    official one: the three files, in file order.

    Args:
        root: a data root to look in first (see the module docstring for the order).
        max_length: if given (>= 1), sentences with more than ``max_length`` words (not
            counting ``<sos>``/``<eos>``) are left out; how many per split is in
            ``corpus.dropped``. Bowman et al. (2016) use short sentences like this.
        device: where to put the tensors (default CPU).

    Returns:
        A :class:`PTBCorpus`; use ``corpus.vocab.decode(row)`` to turn a row back into words.
        The full training split has 42,068 sentences and 10,002 vocabulary entries.
    """
    if max_length is not None:
        max_length = check_positive_int("max_length", max_length)
    paths = {split: fetch_file(f"ptb/ptb.{split}.txt", root=root) for split in _PTB_SPLITS}
    sentences = {split: _read_sentences(*file_version(path)) for split, path in paths.items()}
    vocab = Vocab.from_sentences(sentences["train"])
    splits, dropped = {}, {}
    for split in _PTB_SPLITS:
        tokens, lengths, dropped[split] = _pack(vocab, sentences[split], max_length)
        splits[split] = Sentences(torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device))
    return PTBCorpus(vocab=vocab, dropped=dropped, **splits)
