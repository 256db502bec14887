"""pick_device: the argument, then $VAELAB_DEVICE, then CUDA, MPS, CPU."""
import pytest
import torch

import vaelab


def test_vaelab_device_overrides_the_automatic_choice(monkeypatch):
    monkeypatch.setenv("VAELAB_DEVICE", "cpu")
    assert vaelab.pick_device() == torch.device("cpu")
    monkeypatch.setenv("VAELAB_DEVICE", " cpu ")
    assert vaelab.pick_device() == torch.device("cpu")


def test_an_empty_vaelab_device_is_unset(monkeypatch):
    monkeypatch.delenv("VAELAB_DEVICE", raising=False)
    automatic = vaelab.pick_device()
    monkeypatch.setenv("VAELAB_DEVICE", "")
    assert vaelab.pick_device() == automatic


def test_an_explicit_device_wins_over_vaelab_device(monkeypatch):
    monkeypatch.setenv("VAELAB_DEVICE", "no such device")  # not even read
    assert vaelab.pick_device("cpu") == torch.device("cpu")
    assert vaelab.pick_device(torch.device("meta")) == torch.device("meta")


@pytest.mark.parametrize("value", ["gpu", "CPU", "cpu:0", "cuda:x", "cuda0"])
def test_a_bad_vaelab_device_names_the_variable_the_value_and_the_accepted_values(monkeypatch, value):
    monkeypatch.setenv("VAELAB_DEVICE", value)
    with pytest.raises(ValueError, match=rf"VAELAB_DEVICE='{value}' is not a device vaelab takes; use cpu, cuda, "
                                         r"cuda:N \(N = 0, 1, \.\.\.\) or mps"):
        vaelab.pick_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_vaelab_device_cuda_without_cuda_is_an_error_not_a_fallback(monkeypatch, value):
    monkeypatch.setenv("VAELAB_DEVICE", value)
    with pytest.raises(ValueError, match=rf"VAELAB_DEVICE='{value}' asks for CUDA, but torch.cuda.is_available\(\) is False"):
        vaelab.pick_device()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_vaelab_device_names_a_cuda_index_that_exists(monkeypatch):
    monkeypatch.setenv("VAELAB_DEVICE", "cuda:0")
    assert vaelab.pick_device() == torch.device("cuda:0")
    count = torch.cuda.device_count()
    monkeypatch.setenv("VAELAB_DEVICE", f"cuda:{count}")
    with pytest.raises(ValueError, match=rf"asks for CUDA device {count}, but this machine has {count}"):
        vaelab.pick_device()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_vaelab_device_mps_without_mps_is_an_error(monkeypatch):
    monkeypatch.setenv("VAELAB_DEVICE", "mps")
    with pytest.raises(ValueError, match=r"VAELAB_DEVICE='mps' asks for Apple's MPS, which is not available"):
        vaelab.pick_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_fit_and_sweep_read_vaelab_device_before_the_first_step(monkeypatch):
    monkeypatch.setenv("VAELAB_DEVICE", "cuda")
    make = lambda: vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, seed=0)  # noqa: E731
    data = torch.rand(8, 1, 4, 4)
    with pytest.raises(ValueError, match=r"VAELAB_DEVICE='cuda' asks for CUDA"):
        vaelab.fit(make(), data, max_steps=1, progress=False)
    with pytest.raises(ValueError, match=r"VAELAB_DEVICE='cuda' asks for CUDA"):
        vaelab.sweep([make(), make()], data, max_steps=1, progress=False)
    assert vaelab.fit(make(), data, device="cpu", max_steps=1, progress=False)["step"].tolist() == [0]


def test_sentences_given_to_an_image_model_are_refused_with_the_model_they_need():
    import vaelab
    from vaelab.data import Sentences

    sentences = Sentences(tokens=torch.tensor([[1, 4, 2, 0], [1, 5, 6, 2]]), lengths=torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="sentences need a vaelab.SentenceVAE"):
        vaelab.elbo(vaelab.mlp_vae(), sentences)
