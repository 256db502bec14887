"""A sentence VAE in the style of Bowman et al. (2016), for Penn Treebank.

An LSTM reads the sentence into ``(mu, logvar)``; ``z`` sets the initial state of an
LSTM decoder (and, optionally, is fed at every step), which predicts each next word with
teacher forcing. This is the model where KL annealing was introduced: with a strong
autoregressive decoder the KL collapses to zero unless the weight starts small
(chapter 4). Options add what the PTB model of Kim et al.'s (2018) SA-VAE code, which
Fu et al. (2019) train, has (decoder dropout, separate embeddings, ``z`` setting only
``h0``, uniform initialisation), and ``latent_dim=0`` leaves the decoder alone: an LSTM
language model, the baseline a collapsed VAE is compared with.

Sentences are :class:`vaelab.data.Sentences`: ``tokens (N, T)`` holding
``<sos> w1 .. wn <eos>`` padded with ``<pad>``, and ``lengths (N,)`` counting ``<sos>``
and ``<eos>``.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .._checks import check_choice, check_flag, check_positive, check_positive_int, validation_enabled
from ..divergences import gaussian_kl
from .base import VAEOutput, seeded

__all__ = ["SentenceVAE"]


class SentenceVAE(nn.Module):
    """LSTM encoder / LSTM decoder VAE over token sequences.

    Args:
        vocab_size: number of token ids.
        embed_dim, hidden_dim, latent_dim: sizes (Bowman et al. used 353, 191, 13).
            ``latent_dim=0`` builds no encoder: the decoder alone, an LSTM language model
            whose KL is 0 and whose ELBO is its exact ``log p(x)``.
        pad_id, sos_id, eos_id, unk_id: special ids (those of :class:`vaelab.data.Vocab`).
        word_dropout: probability of replacing each decoder input word by ``<unk>``
            during training (Bowman et al. 2016, Sec. 3.2), weakening the decoder so that
            it must use ``z``.
        latent_to: ``"state"`` (``z`` sets the decoder's initial state), ``"input"``
            (``z`` is concatenated to every decoder input; the initial state is 0) or
            ``"both"``.
        latent_state: how ``z`` sets the initial state, for ``latent_to`` ``"state"`` or
            ``"both"``: ``"hidden_and_cell"`` (default), ``(h0, c0) = tanh(W z + b)``
            split in two; ``"hidden"``, ``h0 = W z + b`` and ``c0 = 0``, as in Kim et
            al.'s PTB model.
        dropout: in training, the probability of zeroing each unit of the decoder's input
            embeddings and of its hidden states before the output layer (inverted
            dropout; Kim et al. and Fu et al. use 0.5). Values in ``[0, 1)``. Unlike word
            dropout it removes parts of every word, not whole words; both weaken the
            decoder. The encoder has none.
        shared_embedding: ``True`` (default): one embedding table for the encoder and the
            decoder; ``False``: two, as in Kim et al.'s model (``encoder_embedding`` and
            ``embedding``).
        init_range: ``None`` (default) keeps PyTorch's initialisation; a number ``r``
            draws every weight and bias from ``U(-r, r)`` (Kim et al. use 0.1); the
            ``<pad>`` rows of the embeddings stay 0.
        seed: initialise the weights from this seed.

    The defaults are the plainer model of chapter 4's main comparison, kept as they were
    so that its stored runs, saved checkpoints and ``bench/run.py`` go on measuring the same
    model. Kim et al.'s model ("Semi-Amortized Variational Autoencoders", 2018), as Fu et
    al.'s (2019) PTB scripts configure it, is ``SentenceVAE(vocab_size, embed_dim=256,
    hidden_dim=256, latent_dim=32, latent_to="both", latent_state="hidden", dropout=0.5,
    shared_embedding=False, init_range=0.1)``; chapter 4 trains both.
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
        latent_state: str = "hidden_and_cell",
        dropout: float = 0.0,
        shared_embedding: bool = True,
        init_range: float | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size, minimum=5)
        self.latent_dim = check_positive_int("latent_dim", latent_dim, minimum=0)
        self.pad_id, self.sos_id, self.eos_id, self.unk_id = pad_id, sos_id, eos_id, unk_id
        word_dropout = check_positive("word_dropout", word_dropout, allow_zero=True)
        if word_dropout > 1:
            raise ValueError(f"word_dropout must be in [0, 1]; got {word_dropout}")
        self.word_dropout = word_dropout
        dropout = check_positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.dropout = dropout
        self.latent_to = check_choice("latent_to", latent_to, ("state", "input", "both"))
        self.latent_state = check_choice("latent_state", latent_state, ("hidden_and_cell", "hidden"))
        self.shared_embedding = check_flag("shared_embedding", shared_embedding)
        embed_dim = check_positive_int("embed_dim", embed_dim)
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        with seeded(seed):
            self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
            if self.latent_dim:
                self.encoder = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
                self.to_posterior = nn.Linear(hidden_dim, 2 * latent_dim)
                state_size = hidden_dim if latent_state == "hidden" else 2 * hidden_dim
                self.to_state = nn.Linear(latent_dim, state_size)
            extra = latent_dim if latent_to in ("input", "both") else 0
            self.decoder = nn.LSTM(embed_dim + extra, hidden_dim, batch_first=True)
            self.to_logits = nn.Linear(hidden_dim, vocab_size)
            if self.latent_dim and not self.shared_embedding:
                self.encoder_embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
            if init_range is not None:
                init_range = check_positive("init_range", init_range)
                with torch.no_grad():
                    for parameter in self.parameters():
                        parameter.uniform_(-init_range, init_range)
                    for module in self.modules():
                        if isinstance(module, nn.Embedding):
                            module.weight[pad_id] = 0.0

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
        """``(mu, logvar)``, each ``(batch, latent)``, from the final encoder state
        (``(batch, 0)`` zeros when ``latent_dim=0``)."""
        if not self.latent_dim:
            empty = torch.zeros(tokens.shape[0], 0, device=tokens.device)
            return empty, empty.clone()
        embedding = self.embedding if self.shared_embedding else self.encoder_embedding
        packed = nn.utils.rnn.pack_padded_sequence(
            embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.encoder(packed)
        return self.to_posterior(h[-1]).chunk(2, dim=1)

    def _initial_state(self, z):
        """The decoder's ``(h0, c0)``, or ``None`` (zeros) when ``z`` does not set it."""
        if not self.latent_dim or self.latent_to == "input":
            return None
        if self.latent_state == "hidden":
            h = self.to_state(z)
            c = torch.zeros_like(h)
        else:
            h, c = torch.tanh(self.to_state(z)).chunk(2, dim=1)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def _with_latent(self, embedded, z):
        if self.latent_dim and self.latent_to in ("input", "both"):
            embedded = torch.cat([embedded, z.unsqueeze(1).expand(-1, embedded.shape[1], -1)], dim=2)
        return embedded

    def _dropped(self, x, generator):
        """Inverted dropout of rate ``self.dropout``, its mask drawn from ``generator``."""
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
        return x * keep / (1.0 - self.dropout)

    def decode_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-word logits ``(batch, time, vocab)`` for decoder ``inputs (batch, time)``
        (no dropout of either kind)."""
        out, _ = self.decoder(self._with_latent(self.embedding(inputs), z), self._initial_state(z))
        return self.to_logits(out)

    def decoder_log_prob(self, z: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, *,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """``log p(x | z)`` of each sentence under teacher forcing: ``(batch,)`` nats.

        Its words and ``<eos>`` are scored (``lengths - 1`` tokens; not ``<sos>``, not padding):
        only their hidden states reach the output layer, so padding costs no softmax over the
        vocabulary. In training mode word dropout and dropout apply, drawn from ``generator``
        in that order (words, then embeddings, then hidden states).
        """
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if self.training and self.word_dropout > 0:
            draw = torch.rand(inputs.shape, generator=generator, device=inputs.device)
            keep = (draw >= self.word_dropout) | (inputs == self.sos_id) | (inputs == self.pad_id)
            inputs = torch.where(keep, inputs, torch.full_like(inputs, self.unk_id))
        dropping = self.training and self.dropout > 0
        embedded = self.embedding(inputs)
        if dropping:
            embedded = self._dropped(embedded, generator)
        hidden, _ = self.decoder(self._with_latent(embedded, z), self._initial_state(z))
        mask = torch.arange(targets.shape[1], device=tokens.device) < (lengths.to(tokens.device) - 1).unsqueeze(1)
        scored = hidden[mask]
        if dropping:
            scored = self._dropped(scored, generator)
        token_log_prob = -F.cross_entropy(self.to_logits(scored), targets[mask], reduction="none")
        return torch.zeros(mask.shape, dtype=token_log_prob.dtype, device=tokens.device).masked_scatter(
            mask, token_log_prob
        ).sum(dim=1)

    def forward(self, tokens, lengths, eps, *, generator=None) -> VAEOutput:
        """One reparameterised pass with teacher forcing and (in training) word dropout and dropout.

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
            hidden, state = self.decoder(self._with_latent(self.embedding(words), z), state)
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
