"""What a History says about itself."""
import torch

import vaelab

SHAPE = (1, 6, 6)
DATA = (torch.linspace(0.0, 1.0, 96 * 36).reshape(96, *SHAPE).remainder(0.97) > 0.5).float()
OPTIONS = dict(batch_size=20, lr=3e-3, progress=False, sync_every=4)


def model():
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, seed=0)


def test_repr_says_how_far_a_step_limited_run_got():
    short = vaelab.fit(model(), DATA, steps=3, **OPTIONS)
    assert repr(short).startswith("History(3 steps: 3 steps of epoch 1, last elbo -")
    longer = vaelab.fit(model(), DATA, test_data=DATA[:20], steps=12, **OPTIONS)  # 5 steps an epoch
    assert repr(longer).startswith("History(12 steps: 2 epochs + 2 steps of epoch 3, 2 held-out scores, last elbo -")
    whole = vaelab.fit(model(), DATA, epochs=1, **OPTIONS)
    assert repr(whole).startswith("History(5 steps: 1 epoch, last elbo -")
    assert repr(vaelab.History(3)) == "History(0 steps)"
