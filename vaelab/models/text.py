"""A sentence VAE in the style of Bowman et al. (2016), for Penn Treebank.

An LSTM reads the sentence into ``(mu, logvar)``; ``z`` sets the initial state of an
LSTM decoder (and, optionally, is fed at every step), which predicts each next word with
teacher forcing. This is the model where KL annealing was introduced: with a strong
autoregressive decoder the KL collapses to zero unless the weight starts small
(chapter 4).

Sentences are :class:`vaelab.data.Sentences`: ``tokens (N, T)`` holding
``<sos> w1 .. wn <eos>`` padded with ``<pad>``, and ``lengths (N,)`` counting ``<sos>``
and ``<eos>``.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .._checks import check_choice, check_positive, check_positive_int, validation_enabled
from ..divergences import gaussian_kl
from .base import VAEOutput, seeded

__all__ = ["SentenceVAE"]


class SentenceVAE(nn.Module):
    """LSTM encoder / LSTM decoder VAE over token sequences.

    Args:
        vocab_size: number of token ids.
        embed_dim, hidden_dim, latent_dim: sizes (Bowman et al. used 353, 191, 13).
        pad_id, sos_id, eos_id, unk_id: special ids (those of :class:`vaelab.data.Vocab`).
        word_dropout: probability of replacing each decoder input word by ``<unk>``
            during training (Bowman et al. 2016, Sec. 3.2), weakening the decoder so that
            it must use ``z``.
        latent_to: ``"state"`` (``z`` sets the decoder's initial hidden state), ``"input"``
            (``z`` is concatenated to every decoder input) or ``"both"``.
        seed: initialise the weights from this seed.
    """

    likelihood = "categorical"

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        latent_dim: int = 16,
        pad_id: int = 0,
        sos_id: int = 1,
        eos_id: int = 2,
        unk_id: int = 3,
        word_dropout: float = 0.0,
        latent_to: str = "state",
        seed: int | None = None,
    ):
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size, minimum=5)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.pad_id, self.sos_id, self.eos_id, self.unk_id = pad_id, sos_id, eos_id, unk_id
        word_dropout = check_positive("word_dropout", word_dropout, allow_zero=True)
        if word_dropout > 1:
            raise ValueError(f"word_dropout must be in [0, 1]; got {word_dropout}")
        self.word_dropout = word_dropout
        self.latent_to = check_choice("latent_to", latent_to, ("state", "input", "both"))
        embed_dim = check_positive_int("embed_dim", embed_dim)
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        with seeded(seed):
            self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
            self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
            self.to_posterior = nn.Linear(hidden_dim, 2 * latent_dim)
            self.to_state = nn.Linear(latent_dim, 2 * hidden_dim)
            extra = latent_dim if latent_to in ("input", "both") else 0
            self.decoder = nn.LSTM(embed_dim + extra, hidden_dim, batch_first=True)
            self.to_logits = nn.Linear(hidden_dim, vocab_size)

    @property
    def data_dim(self) -> int:
        """Not a fixed number for text; ``recon_dims="mean"`` is not meaningful here."""
        return 1

    #: The tensors one example consists of: :class:`vaelab.data.Sentences` has these two.
    inputs = ("tokens", "lengths")

    def check_input(self, tokens, lengths=None) -> None:
        """Raise a clear error unless ``tokens (N, T)`` and ``lengths (N,)`` are valid."""
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
            raise ValueError(
                "tokens must be a LongTensor of shape (batch, time), as vaelab.data.ptb returns in .tokens; got "
                + (f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(tokens).__name__)
            )
        if lengths is None or not isinstance(lengths, torch.Tensor) or lengths.shape != tokens.shape[:1]:
            raise ValueError(
                f"lengths must be a tensor of shape ({tokens.shape[0]},), one length per sentence (<sos> and <eos> "
                "included), as vaelab.data.ptb returns in .lengths"
            )
        if not validation_enabled():
            return
        if bool((lengths < 2).any()) or bool((lengths > tokens.shape[1]).any()):
            raise ValueError(f"lengths must be in [2, {tokens.shape[1]}] (<sos> and <eos> included)")
        if bool((tokens < 0).any()) or bool((tokens >= self.vocab_size).any()):
            raise ValueError(
                f"tokens must be ids in [0, {self.vocab_size}); build the model with vocab_size=len(vocab) of the "
                "vocabulary that encoded them"
            )

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(batch, latent)``, from the final encoder state."""
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.encoder(packed)
        return self.to_posterior(h[-1]).chunk(2, dim=1)

    def _initial_state(self, z):
        h, c = torch.tanh(self.to_state(z)).chunk(2, dim=1)
        if self.latent_to == "input":
            h, c = torch.zeros_like(h), torch.zeros_like(c)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def _decoder_inputs(self, words, z):
        embedded = self.embedding(words)
        if self.latent_to in ("input", "both"):
            embedded = torch.cat([embedded, z.unsqueeze(1).expand(-1, words.shape[1], -1)], dim=2)
        return embedded

    def decode_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-word logits ``(batch, time, vocab)`` for decoder ``inputs (batch, time)``."""
        out, _ = self.decoder(self._decoder_inputs(inputs, z), self._initial_state(z))
        return self.to_logits(out)

    def decoder_log_prob(self, z: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, *,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """``log p(x | z)`` of each sentence under teacher forcing: ``(batch,)`` nats.

        Its words and ``<eos>`` are scored (``lengths - 1`` tokens; not ``<sos>``, not padding):
        only their hidden states reach the output layer, so padding costs no softmax over the
        vocabulary. In training mode word dropout applies, drawn from ``generator``.
        """
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if self.training and self.word_dropout > 0:
            draw = torch.rand(inputs.shape, generator=generator, device=inputs.device)
            keep = (draw >= self.word_dropout) | (inputs == self.sos_id) | (inputs == self.pad_id)
            inputs = torch.where(keep, inputs, torch.full_like(inputs, self.unk_id))
        hidden, _ = self.decoder(self._decoder_inputs(inputs, z), self._initial_state(z))
        mask = torch.arange(targets.shape[1], device=tokens.device) < (lengths.to(tokens.device) - 1).unsqueeze(1)
        token_log_prob = -F.cross_entropy(self.to_logits(hidden[mask]), targets[mask], reduction="none")
        return torch.zeros(mask.shape, dtype=token_log_prob.dtype, device=tokens.device).masked_scatter(
            mask, token_log_prob
        ).sum(dim=1)

    def forward(self, tokens, lengths, eps, *, generator=None) -> VAEOutput:
        """One reparameterised pass with teacher forcing and (in training) word dropout.

        Returns a :class:`vaelab.VAEOutput` whose ``log_px`` is the log-probability of each
        whole sentence (its words and ``<eos>``), nats, ``(batch,)``; ``params`` is empty
        (the logits of the scored positions are not kept).
        """
        self.check_input(tokens, lengths)
        mu, logvar = self.encode(tokens, lengths)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_px = self.decoder_log_prob(z, tokens, lengths, generator=generator)
        return VAEOutput(log_px, gaussian_kl(mu, logvar), mu, logvar, z, {})

    @torch.no_grad()
    def generate(self, z: torch.Tensor, *, max_length: int = 30, greedy: bool = True, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode sentences from latent codes, all in one batch, one time step at a time.

        Args:
            z: ``(batch, latent)``.
            max_length: words to generate at most.
            greedy: argmax decoding; otherwise sample with ``temperature``.

        Returns:
            ``(batch, <= max_length)`` token ids; positions after ``<eos>`` hold ``<pad>``.
        """
        batch = z.shape[0]
        words = torch.full((batch, 1), self.sos_id, dtype=torch.long, device=z.device)
        state = self._initial_state(z)
        done = torch.zeros(batch, dtype=torch.bool, device=z.device)
        out = []
        for _ in range(max_length):
            hidden, state = self.decoder(self._decoder_inputs(words, z), state)
            logits = self.to_logits(hidden[:, -1])
            if greedy:
                nxt = logits.argmax(dim=1)
            else:
                nxt = torch.multinomial(F.softmax(logits / temperature, dim=1), 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            out.append(nxt)
            done |= nxt == self.eos_id
            words = nxt.unsqueeze(1)
            if bool(done.all()):
                break
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def interpolate(self, tokens_a, lengths_a, tokens_b, lengths_b, *, steps: int = 5, max_length: int = 30):
        """Greedy decodes along the straight line between the posterior means of two sentences.

        Args:
            tokens_a, lengths_a, tokens_b, lengths_b: one sentence each, ``(1, T)`` and ``(1,)``.
            steps: points on the line, ends included.

        Returns:
            ``(steps, <= max_length)`` token ids.
        """
        mu_a, _ = self.encode(tokens_a, lengths_a)
        mu_b, _ = self.encode(tokens_b, lengths_b)
        t = torch.linspace(0, 1, check_positive_int("steps", steps, minimum=2), device=mu_a.device).unsqueeze(1)
        return self.generate((1 - t) * mu_a + t * mu_b, max_length=max_length)
