"""The sentence VAE: its log-likelihood, word dropout, decoding, and that it trains."""
import pytest
import torch
import torch.nn.functional as F

import vaelab
from vaelab.data import Sentences

PAD, SOS, EOS, UNK = 0, 1, 2, 3
TOKENS = torch.tensor([[SOS, 5, 6, 7, EOS], [SOS, 8, EOS, PAD, PAD], [SOS, 9, 5, EOS, PAD]])
LENGTHS = torch.tensor([5, 3, 4])


def model(**kwargs):
    options = dict(embed_dim=8, hidden_dim=12, latent_dim=4, seed=0)
    options.update(kwargs)
    return vaelab.SentenceVAE(10, **options)


def test_log_px_is_the_sum_of_next_word_log_probs_up_to_eos():
    m = model().eval()
    eps = torch.zeros(3, 4)
    out = m(TOKENS, LENGTHS, eps)
    mu, _ = m.encode(TOKENS, LENGTHS)
    logits = m.decode_logits(mu, TOKENS[:, :-1])
    log_probs = F.log_softmax(logits, dim=2)
    for i, n in enumerate(LENGTHS.tolist()):
        expected = sum(log_probs[i, t, TOKENS[i, t + 1]] for t in range(n - 1))
        assert out.log_px[i].item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(out.kl_per_dim, vaelab.gaussian_kl(*m.encode(TOKENS, LENGTHS)))


def test_padding_does_not_change_a_sentences_score():
    m = model().eval()
    longer = F.pad(TOKENS, (0, 3), value=PAD)
    torch.testing.assert_close(m(longer, LENGTHS, torch.zeros(3, 4)).log_px, m(TOKENS, LENGTHS, torch.zeros(3, 4)).log_px)


def test_word_dropout_acts_in_training_only_and_follows_the_generator():
    m = model(word_dropout=0.5)
    eps = torch.zeros(3, 4)
    a = m(TOKENS, LENGTHS, eps, generator=torch.Generator().manual_seed(0)).log_px
    b = m(TOKENS, LENGTHS, eps, generator=torch.Generator().manual_seed(0)).log_px
    c = m(TOKENS, LENGTHS, eps, generator=torch.Generator().manual_seed(1)).log_px
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    m.eval()
    torch.testing.assert_close(m(TOKENS, LENGTHS, eps).log_px, model()(TOKENS, LENGTHS, eps).log_px)


@pytest.mark.parametrize("latent_to", ["state", "input", "both"])
def test_training_learns_the_corpus_and_greedy_decoding_reproduces_it(latent_to):
    # KL weight 0: an autoencoder, so the code must carry which sentence it is (with
    # weight 1 this tiny corpus collapses to the prior, the problem of chapter 4).
    m = model(latent_to=latent_to, hidden_dim=32, embed_dim=16)
    data = Sentences(TOKENS.repeat(8, 1), LENGTHS.repeat(8))
    history = vaelab.fit(m, data, epochs=100, batch_size=24, lr=1e-2, progress=False, test_data=data,
                         objective=vaelab.Objective(beta=0.0))
    assert history.epochs["test_recon"][-1] < 0.1 * history.epochs["test_recon"][0]
    mu, _ = m.encode(TOKENS, LENGTHS)
    decoded = m.generate(mu, max_length=6)
    for i, n in enumerate(LENGTHS.tolist()):
        assert decoded[i, : n - 1].tolist() == TOKENS[i, 1:n].tolist()
        assert (decoded[i, n - 1 :] == PAD).all()


def test_interpolation_ends_at_the_two_sentences():
    m = model().eval()
    path = m.interpolate(TOKENS[:1], LENGTHS[:1], TOKENS[1:2], LENGTHS[1:2], steps=4, max_length=5)
    mu_a, _ = m.encode(TOKENS[:1], LENGTHS[:1])
    mu_b, _ = m.encode(TOKENS[1:2], LENGTHS[1:2])
    assert path.shape[0] == 4
    assert path[0].tolist()[: m.generate(mu_a, max_length=5).shape[1]] == m.generate(mu_a, max_length=5)[0].tolist()
    assert path[-1].tolist()[: m.generate(mu_b, max_length=5).shape[1]] == m.generate(mu_b, max_length=5)[0].tolist()


def test_sampled_decoding_is_reproducible_with_a_generator():
    m = model().eval()
    z = torch.zeros(2, 4)
    a = m.generate(z, greedy=False, generator=torch.Generator().manual_seed(3))
    b = m.generate(z, greedy=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "tokens, lengths, match",
    [
        (TOKENS.float(), LENGTHS, "tokens must be a LongTensor"),
        (TOKENS, LENGTHS[:2], r"lengths must be a tensor of shape \(3,\)"),
        (TOKENS, torch.tensor([5, 1, 4]), r"lengths must be in \[2, 5\]"),
        (TOKENS + 20, LENGTHS, r"tokens must be ids in \[0, 10\)"),
    ],
)
def test_bad_input(tokens, lengths, match):
    with pytest.raises(ValueError, match=match):
        model()(tokens, lengths, torch.zeros(3, 4))
