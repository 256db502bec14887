"""The sentence VAE: its log-likelihood, word dropout, decoding, and that it trains."""
import math

import numpy as np
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


@pytest.mark.parametrize("option", ["word_dropout", "dropout"])
def test_both_dropouts_act_in_training_only_and_follow_the_generator(option):
    m = model(**{option: 0.5})
    eps = torch.zeros(3, 4)
    a = m(TOKENS, LENGTHS, eps, generator=torch.Generator().manual_seed(0)).log_px
    b = m(TOKENS, LENGTHS, eps, generator=torch.Generator().manual_seed(0)).log_px
    c = m(TOKENS, LENGTHS, eps, generator=torch.Generator().manual_seed(1)).log_px
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    m.eval()  # off in eval mode: the numbers of the model without it (the same weights), every time
    assert torch.equal(m(TOKENS, LENGTHS, eps).log_px, model()(TOKENS, LENGTHS, eps).log_px)
    assert torch.equal(m(TOKENS, LENGTHS, eps).log_px, m(TOKENS, LENGTHS, eps).log_px)


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


# ---- length-bucketed batches -------------------------------------------------------------

def test_bucketed_batches_cover_every_sentence_once_and_depend_only_on_seed_and_epoch():
    lengths = torch.randint(3, 40, (1003,), generator=torch.Generator().manual_seed(0))
    batches = vaelab.batching.bucketed_batches(lengths, batch_size=32, bucket_size=8, seed=5, epoch=2)
    assert len(batches) == math.ceil(1003 / 32)
    assert sorted(torch.cat([i for i, _ in batches]).tolist()) == list(range(1003))
    assert all(i.shape[0] == 32 for i, _ in batches[:-1]) and batches[-1][0].shape[0] == 1003 % 32
    assert all(width == int(lengths[i].max()) for i, width in batches)
    again = vaelab.batching.bucketed_batches(lengths, batch_size=32, bucket_size=8, seed=5, epoch=2)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, again))
    other = vaelab.batching.bucketed_batches(lengths, batch_size=32, bucket_size=8, seed=5, epoch=3)
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, other))
    # sorting within pools cuts the padding: columns paid for, against unsorted batches of the same shuffle
    plain = vaelab.batching.bucketed_batches(lengths, batch_size=32, bucket_size=1, seed=5, epoch=2)
    cells = lambda bs: sum(i.shape[0] * w for i, w in bs)  # noqa: E731
    assert cells(batches) < 0.75 * cells(plain)
    permutation = torch.randperm(1003, generator=vaelab.batching.generator(5, "shuffle", 2))
    assert torch.equal(torch.cat([i for i, _ in plain]), permutation)  # bucket_size=1 keeps the shuffle


def test_fit_trains_on_trimmed_batches_and_its_statistics_match_the_padded_scores():
    tokens = torch.nn.functional.pad(TOKENS, (0, 6)).repeat(10, 1)
    data = Sentences(tokens, LENGTHS.repeat(10))
    m = model()
    seen = []
    m.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    history = vaelab.fit(m, data, epochs=2, batch_size=4, progress=False, bucket_size=3, sync_every=1)
    assert max(seen) <= 5 and min(seen) < 5  # trimmed to each batch's longest sentence, never to the padded 11
    assert len(history) == 2 * math.ceil(30 / 4)


def test_bucket_size_is_checked_and_belongs_to_sentences():
    data = Sentences(TOKENS, LENGTHS)
    with pytest.raises(ValueError, match="bucket_size"):
        vaelab.fit(model(), data, bucket_size=0, progress=False)
    images = torch.rand(8, 1, 4, 4)
    with pytest.raises(ValueError, match="bucket_size"):
        vaelab.fit(vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2), images, bucket_size=4, progress=False)


# ---- measurements on sentences ------------------------------------------------------------

def corpus(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (n,), generator=g)
    tokens = torch.zeros(n, 10, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        tokens[i, 0], tokens[i, length - 1] = SOS, EOS
        tokens[i, 1 : length - 1] = torch.randint(4, 10, (length - 2,), generator=g)
    return Sentences(tokens, lengths)


def test_latent_diagnostics_accept_sentences_and_keep_their_order():
    data, m = corpus(), model().eval()
    with torch.no_grad():
        mu, logvar = m.encode(data.tokens, data.lengths)  # padded, in file order
    torch.testing.assert_close(vaelab.kl_per_dim(m, data), vaelab.gaussian_kl(mu, logvar).double().mean(0))
    units = vaelab.active_units(m, data, threshold=0.0)
    torch.testing.assert_close(units["variance"], mu.double().var(0, correction=0))
    information = vaelab.mutual_information(m, data)
    assert 0.0 <= information <= math.log(len(data))


def test_elbo_and_iw_on_sentences_and_their_perplexities():
    data, m = corpus(), model().eval()
    result = vaelab.elbo(m, data, batch_size=7)
    with torch.no_grad():
        mu, logvar = m.encode(data.tokens, data.lengths)
    assert result["kl"] == pytest.approx(float(vaelab.gaussian_kl(mu, logvar).sum(1).mean()), rel=1e-5)
    tokens = float((data.lengths - 1).sum())
    assert result["perplexity"] == pytest.approx(math.exp(-result["elbo"] * len(data) / tokens))
    assert vaelab.perplexity(-result["elbo"], data) == pytest.approx(result["perplexity"])
    # k = 1: an unbiased estimate of the ELBO; many samples: a tighter bound, never looser on average
    one = [vaelab.iw_log_likelihood(m, data, k=1, seed=s)["nll"] for s in range(30)]
    assert np.mean(one) == pytest.approx(-result["elbo"], rel=0.02)
    many = vaelab.iw_log_likelihood(m, data, k=200, batch_size=16)
    assert many["nll"] < np.mean(one) and many["perplexity"] == pytest.approx(vaelab.perplexity(many["nll"], data))
    # the samples do not depend on how many are scored at once
    a = vaelab.iw_log_likelihood(m, data, k=70, k_chunk=3)["log_likelihood"]
    b = vaelab.iw_log_likelihood(m, data, k=70, k_chunk=64)["log_likelihood"]
    torch.testing.assert_close(a, b)


def test_image_only_measurements_refuse_sentences_by_name():
    with pytest.raises(ValueError, match="rate_distortion.*SentenceVAE"):
        vaelab.rate_distortion(model(), corpus())
    with pytest.raises(ValueError, match="levels"):
        vaelab.iw_log_likelihood(model(), corpus(), k=2, levels=256)
    with pytest.raises(ValueError, match="sentences"):
        vaelab.perplexity(1.0, torch.zeros(3, 4))


def test_staircase_translates_the_keras_callback():
    klstart, annealtime, steps_per_epoch = 40, 20, 3
    weight, during = 0.0, []
    for epoch in range(70):  # what the callback's weight is during each epoch
        during.append(weight)
        if epoch > klstart:
            weight = min(weight + 1.0 / annealtime, 1.0)
    schedule = vaelab.staircase(steps_per_epoch, delay=klstart + 1, increment=1 / annealtime)
    steps = np.arange(70 * steps_per_epoch)
    np.testing.assert_allclose(schedule(steps), np.repeat(during, steps_per_epoch), atol=1e-12)
    assert np.flatnonzero(schedule(steps))[0] // steps_per_epoch == 42  # the 43rd epoch


def test_sentences_have_a_length_and_slices():
    sentences = Sentences(TOKENS, LENGTHS)
    assert len(sentences) == 3
    first_two = sentences[:2]
    assert isinstance(first_two, Sentences) and len(first_two) == 2
    assert torch.equal(first_two.tokens, TOKENS[:2]) and torch.equal(first_two.lengths, LENGTHS[:2])
    picked = sentences[[1, 2]]
    assert picked.tokens.shape == (2, 4)  # padded to its own longest sentence
    assert torch.equal(picked.tokens, TOKENS[[1, 2], :4]) and torch.equal(picked.lengths, LENGTHS[[1, 2]])
    m = model().eval()
    assert vaelab.elbo(m, picked)["elbo"] == vaelab.elbo(m, Sentences(TOKENS[[1, 2]], LENGTHS[[1, 2]]))["elbo"]
    with pytest.raises(ValueError, match=r"Sentences\[1\] would drop the batch axis: take sentences\[1:2\]"):
        sentences[1]
    assert repr(sentences) == "Sentences(3 sentences, tokens (3, 5))"


# ---- Kim et al.'s PTB model (Fu et al.'s), and the decoder alone -----------------------------

KIM = dict(latent_to="both", latent_state="hidden", dropout=0.5, shared_embedding=False, init_range=0.1)


def test_dropout_zeroes_about_its_rate_of_embedding_units_and_rescales_the_rest():
    m = model(dropout=0.3, embed_dim=64)
    seen = []
    m.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    tokens = torch.full((200, 6), 5)
    tokens[:, 0], tokens[:, -1] = SOS, EOS
    m(tokens, torch.full((200,), 6), torch.zeros(200, 4), generator=torch.Generator().manual_seed(0))
    embedded = m.embedding(tokens[:, :-1]).detach()
    kept = seen[0] != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.01)
    torch.testing.assert_close(seen[0][kept], (embedded / 0.7)[kept])


def test_latent_state_hidden_sets_h0_from_z_and_c0_to_exactly_zero():
    m = model(latent_to="state", latent_state="hidden").eval()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    inputs = TOKENS[:, :-1]
    h0 = m.to_state(z).unsqueeze(0)
    expected, _ = m.decoder(m.embedding(inputs), (h0, torch.zeros_like(h0)))
    torch.testing.assert_close(m.decode_logits(z, inputs), m.to_logits(expected))
    assert m.to_state.out_features == 12  # h0 only; the default sets both from 2 * 12 outputs
    assert model().to_state.out_features == 24


def test_init_range_draws_every_parameter_from_the_interval_and_keeps_pad_rows_zero():
    m = model(init_range=0.1, shared_embedding=False)
    values = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert values.abs().max().item() <= 0.1 and values.abs().max().item() > 0.099
    assert values.std().item() == pytest.approx(0.2 / math.sqrt(12), rel=0.05)  # uniform on [-0.1, 0.1]
    assert (m.embedding.weight[PAD] == 0).all() and (m.encoder_embedding.weight[PAD] == 0).all()
    assert model().decoder.weight_hh_l0.abs().max().item() > 0.2  # PyTorch's default: U(+-1/sqrt(12))
    torch.testing.assert_close(m.embedding.weight, model(init_range=0.1, shared_embedding=False).embedding.weight)


def test_separate_embeddings_are_separate_parameters_and_the_encoder_reads_only_its_own():
    separate, shared = model(shared_embedding=False), model()
    assert separate.encoder_embedding.weight is not separate.embedding.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(separate) - count(shared) == 10 * 8
    before = separate.encode(TOKENS, LENGTHS)[0].detach()
    with torch.no_grad():
        separate.embedding.weight.add_(1.0)
        shared.embedding.weight.add_(1.0)
    torch.testing.assert_close(separate.encode(TOKENS, LENGTHS)[0], before)
    assert not torch.allclose(shared.encode(TOKENS, LENGTHS)[0], model().encode(TOKENS, LENGTHS)[0])


def test_the_decoder_alone_is_a_language_model_whose_elbo_is_its_exact_log_likelihood():
    lm = model(latent_dim=0).eval()
    assert not hasattr(lm, "encoder") and lm.decoder.input_size == 8
    out = lm(TOKENS, LENGTHS, torch.zeros(3, 0))
    assert out.kl_per_dim.shape == (3, 0) and out.kl_per_dim.sum().item() == 0.0
    log_probs = F.log_softmax(lm.to_logits(lm.decoder(lm.embedding(TOKENS[:, :-1]))[0]), dim=2)
    for i, n in enumerate(LENGTHS.tolist()):
        expected = sum(log_probs[i, t, TOKENS[i, t + 1]] for t in range(n - 1))
        assert out.log_px[i].item() == pytest.approx(expected.item(), rel=1e-5)
    data = corpus()
    result = vaelab.elbo(lm, data)
    assert result["kl"] == 0.0
    iw = vaelab.iw_log_likelihood(lm, data, k=3, per_example=True)
    assert iw["nll"] == pytest.approx(-result["elbo"], rel=1e-6)


@pytest.mark.parametrize("options", [KIM, dict(latent_dim=0, dropout=0.5, init_range=0.1)], ids=["kim", "lm"])
def test_kims_model_and_the_decoder_alone_train_with_fit(options):
    m = model(**{**options, "hidden_dim": 32, "embed_dim": 16})
    data = Sentences(TOKENS.repeat(8, 1), LENGTHS.repeat(8))
    history = vaelab.fit(m, data, epochs=60, batch_size=24, lr=1e-2, progress=False, test_data=data,
                         objective=vaelab.Objective(beta=0.0))
    # three sentences with a shared start: about 2 nats of choice each in the end, from 17 at first
    assert history.epochs["test_recon"][-1] < 0.25 * history.epochs["test_recon"][0]
    assert np.isfinite(history["kl"]).all()


def test_new_options_are_checked():
    for options, match in [(dict(dropout=1.0), "dropout"), (dict(latent_state="cell"), "latent_state"),
                           (dict(shared_embedding=1), "shared_embedding"), (dict(init_range=0.0), "init_range"),
                           (dict(latent_dim=-1), "latent_dim")]:
        with pytest.raises(ValueError, match=match):
            model(**options)
