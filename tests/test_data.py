"""Tests for vaelab.data: lookup, verification, downloads, decoding and generation.

Every test runs offline: all mirrors point at a closed port on 127.0.0.1 unless a test
starts its own loopback server, and the per-user cache lives in ``tmp_path``. Tests of
the real datasets read ``$VAELAB_DATA`` as it was when the session started.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import math
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab import data

REAL_DATA = os.environ.get("VAELAB_DATA")
needs_real_data = pytest.mark.skipif(not REAL_DATA, reason="set VAELAB_DATA to the shared data folder")

PTB_VALID = "ptb/ptb.valid.txt"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No $VAELAB_DATA, a private cache and mirrors that refuse connections."""
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    refused = f"http://127.0.0.1:{_closed_port()}/"
    for dataset in list(data.MIRRORS):
        monkeypatch.setitem(data.MIRRORS, dataset, (refused,))
    return refused


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _put(root: Path, relative: str, payload: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _expect(monkeypatch, relative: str, payload: bytes) -> str:
    """Make ``payload`` the official content of ``relative``; return its sha256."""
    digest = _sha256(payload)
    monkeypatch.setitem(data.CHECKSUMS, relative, data.Checksum("sha256", digest))
    return digest


def _idx(magic: int, array: np.ndarray, *, dims=None) -> bytes:
    dims = array.shape if dims is None else dims
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


TINY_IMAGES = np.stack([np.zeros((28, 28)), np.full((28, 28), 255), np.arange(784).reshape(28, 28) % 256])
TINY_LABELS = np.array([7, 0, 9])


def _write_idx_set(monkeypatch, root: Path, dataset: str, labels=TINY_LABELS) -> None:
    for split_prefix in ("train", "t10k"):
        images_gz = _idx(2051, TINY_IMAGES)
        labels_gz = _idx(2049, labels)
        for name, payload in ((f"{split_prefix}-images-idx3-ubyte.gz", images_gz),
                              (f"{split_prefix}-labels-idx1-ubyte.gz", labels_gz)):
            _put(root, f"{dataset}/{name}", payload)
            _expect(monkeypatch, f"{dataset}/{name}", payload)


# --- lookup order and verification -------------------------------------------------


def test_lookup_order_explicit_root_then_env_then_cache(monkeypatch, tmp_path):
    payload = b" the cat sat \n"
    _expect(monkeypatch, PTB_VALID, payload)
    explicit = _put(tmp_path / "explicit", PTB_VALID, payload)
    from_env = _put(tmp_path / "env", PTB_VALID, payload)
    cached = _put(data.cache_dir(), PTB_VALID, payload)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    assert data.fetch_file(PTB_VALID, root=tmp_path / "explicit") == explicit
    assert data.fetch_file(PTB_VALID) == from_env
    monkeypatch.delenv("VAELAB_DATA")
    assert data.fetch_file(PTB_VALID) == cached


def test_root_without_the_file_falls_through_to_env(monkeypatch, tmp_path):
    payload = b" the cat sat \n"
    _expect(monkeypatch, PTB_VALID, payload)
    (tmp_path / "explicit").mkdir()
    from_env = _put(tmp_path / "env", PTB_VALID, payload)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    assert data.fetch_file(PTB_VALID, root=tmp_path / "explicit") == from_env


def test_corrupt_file_in_explicit_root_raises_instead_of_falling_through(monkeypatch, tmp_path):
    good = b" the cat sat \n"
    expected = _expect(monkeypatch, PTB_VALID, good)
    bad = b" the dog sat \n"  # same size, different bytes
    corrupt = _put(tmp_path / "explicit", PTB_VALID, bad)
    _put(tmp_path / "env", PTB_VALID, good)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    with pytest.raises(data.DataIntegrityError) as caught:
        data.fetch_file(PTB_VALID, root=tmp_path / "explicit")
    message = str(caught.value)
    assert str(corrupt) in message and expected in message and _sha256(bad) in message
    assert "Delete it" in message


def test_truncated_file_in_vaelab_data_raises(monkeypatch, tmp_path):
    good = b" the cat sat \n a dog ran \n"
    expected = _expect(monkeypatch, PTB_VALID, good)
    truncated = _put(tmp_path / "env", PTB_VALID, good[:10])
    _put(data.cache_dir(), PTB_VALID, good)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    with pytest.raises(data.DataIntegrityError, match=expected) as caught:
        data.fetch_file(PTB_VALID)
    assert str(truncated) in str(caught.value)


def test_checksum_is_computed_once_per_file_version(monkeypatch, tmp_path):
    payload = b" the cat sat \n"
    _expect(monkeypatch, PTB_VALID, payload)
    path = _put(tmp_path, PTB_VALID, payload)
    calls = []
    real_new = hashlib.new
    monkeypatch.setattr(hashlib, "new", lambda *args, **kw: calls.append(args) or real_new(*args, **kw))
    data.fetch_file(PTB_VALID, root=tmp_path)
    data.fetch_file(PTB_VALID, root=tmp_path)
    assert len(calls) == 1
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new version of the file
    data.fetch_file(PTB_VALID, root=tmp_path)
    assert len(calls) == 2


# --- downloads ------------------------------------------------------------------


@pytest.fixture
def http_folder(tmp_path):
    """A loopback HTTP server for ``tmp_path / "served"``; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_lands_verified_in_cache_and_is_reused_offline(monkeypatch, http_folder, offline):
    folder, url = http_folder
    payload = b" the cat sat \n" * 1000
    _expect(monkeypatch, PTB_VALID, payload)
    (folder / "ptb.valid.txt").write_bytes(payload)
    monkeypatch.setitem(data.MIRRORS, "ptb", (url,))
    path = data.fetch_file(PTB_VALID)
    assert path == data.cache_dir() / PTB_VALID
    assert path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == ["ptb.valid.txt"]
    monkeypatch.setitem(data.MIRRORS, "ptb", (offline,))
    assert data.fetch_file(PTB_VALID) == path


def test_download_falls_back_to_the_next_mirror(monkeypatch, http_folder, offline):
    folder, url = http_folder
    payload = b" the cat sat \n"
    _expect(monkeypatch, PTB_VALID, payload)
    (folder / "ptb.valid.txt").write_bytes(payload)
    monkeypatch.setitem(data.MIRRORS, "ptb", (offline, url + "missing/", url))
    assert data.fetch_file(PTB_VALID).read_bytes() == payload


def test_download_with_wrong_checksum_leaves_no_file(monkeypatch, http_folder):
    folder, url = http_folder
    payload = b" the cat sat \n"
    expected = _expect(monkeypatch, PTB_VALID, b"something else")
    (folder / "ptb.valid.txt").write_bytes(payload)
    monkeypatch.setitem(data.MIRRORS, "ptb", (url,))
    with pytest.raises(data.DownloadError) as caught:
        data.fetch_file(PTB_VALID)
    assert expected in str(caught.value) and _sha256(payload) in str(caught.value)
    assert list((data.cache_dir() / "ptb").iterdir()) == []


def test_closed_port_fails_fast_and_says_where_to_put_the_file(monkeypatch):
    _expect(monkeypatch, PTB_VALID, b"x")
    start = time.monotonic()
    with pytest.raises(data.DownloadError) as caught:
        data.fetch_file(PTB_VALID)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert str(data.cache_dir() / PTB_VALID) in message and "VAELAB_DATA" in message
    assert "refused" in message.lower()


def test_server_that_never_answers_fails_within_the_timeout(monkeypatch):
    _expect(monkeypatch, PTB_VALID, b"x")
    with socket.socket() as silent:  # the kernel accepts connections; nobody replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setitem(data.MIRRORS, "ptb", (f"http://127.0.0.1:{silent.getsockname()[1]}/",))
        start = time.monotonic()
        with pytest.raises(data.DownloadError, match="timed out"):
            data.fetch_file(PTB_VALID, timeout=1.0)
        assert time.monotonic() - start < 4


def test_trickling_server_hits_the_overall_deadline(monkeypatch):
    _expect(monkeypatch, PTB_VALID, b"x")
    stop = threading.Event()

    def trickle(listener):
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                connection.sendall(b"x")
                time.sleep(0.05)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        thread = threading.Thread(target=trickle, args=(listener,), daemon=True)
        thread.start()
        monkeypatch.setitem(data.MIRRORS, "ptb", (f"http://127.0.0.1:{listener.getsockname()[1]}/",))
        start = time.monotonic()
        try:
            with pytest.raises(data.DownloadError, match="deadline"):
                data.fetch_file(PTB_VALID, timeout=1.0, deadline=1.0)
            assert time.monotonic() - start < 4
        finally:
            stop.set()
            thread.join(5)
    assert list((data.cache_dir() / "ptb").iterdir()) == []


def test_loader_with_no_files_offline_names_the_expected_path():
    with pytest.raises(data.DownloadError) as caught:
        data.mnist("train")
    assert str(data.cache_dir() / "mnist" / "train-images-idx3-ubyte.gz") in str(caught.value)


# --- MNIST / Fashion-MNIST decoding ----------------------------------------------


def test_mnist_decodes_idx_to_unit_interval(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    images, labels = data.mnist("test", root=tmp_path)
    assert images.dtype == torch.float32 and images.shape == (3, 1, 28, 28)
    assert torch.equal(images[0], torch.zeros(1, 28, 28)) and torch.equal(images[1], torch.ones(1, 28, 28))
    assert images[2, 0, 0, 5].item() == pytest.approx(5 / 255)
    assert images[2, 0, 9, 4].item() == pytest.approx(((9 * 28 + 4) % 256) / 255)
    assert labels.dtype == torch.int64 and labels.tolist() == [7, 0, 9]


def test_fashion_mnist_reads_its_own_folder(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    _write_idx_set(monkeypatch, tmp_path, "fashion-mnist", labels=np.array([1, 2, 3]))
    assert data.fashion_mnist("train", root=tmp_path)[1].tolist() == [1, 2, 3]
    assert data.mnist("train", root=tmp_path)[1].tolist() == [7, 0, 9]


def test_repeated_loads_are_memoised_but_return_fresh_tensors(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    first, _ = data.mnist("train", root=tmp_path)
    hits = data.images._read_idx_cached.cache_info().hits
    first.zero_()
    second, _ = data.mnist("train", root=tmp_path)
    assert data.images._read_idx_cached.cache_info().hits == hits + 2
    assert second.max().item() == 1.0


@pytest.mark.parametrize("split", ["valid", "Train", None])
def test_bad_split_is_rejected(split):
    with pytest.raises(ValueError, match="split"):
        data.mnist(split)


def test_wrong_magic_number_names_the_file(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    payload = _idx(2049, TINY_IMAGES)  # image file carrying the label magic number
    path = _put(tmp_path, "mnist/t10k-images-idx3-ubyte.gz", payload)
    _expect(monkeypatch, "mnist/t10k-images-idx3-ubyte.gz", payload)
    with pytest.raises(data.DataIntegrityError, match="2051") as caught:
        data.mnist("test", root=tmp_path)
    assert str(path) in str(caught.value)


def test_idx_body_shorter_than_its_header_names_the_file(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    payload = _idx(2051, TINY_IMAGES[:2], dims=(3, 28, 28))
    path = _put(tmp_path, "mnist/t10k-images-idx3-ubyte.gz", payload)
    _expect(monkeypatch, "mnist/t10k-images-idx3-ubyte.gz", payload)
    with pytest.raises(data.DataIntegrityError, match="truncated") as caught:
        data.mnist("test", root=tmp_path)
    assert str(path) in str(caught.value)


def test_cut_gzip_stream_names_the_file(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    payload = _idx(2051, TINY_IMAGES)[:-40]
    path = _put(tmp_path, "mnist/t10k-images-idx3-ubyte.gz", payload)
    _expect(monkeypatch, "mnist/t10k-images-idx3-ubyte.gz", payload)
    with pytest.raises(data.DataIntegrityError, match="gzip") as caught:
        data.mnist("test", root=tmp_path)
    assert str(path) in str(caught.value)


def test_image_and_label_counts_must_agree(monkeypatch, tmp_path):
    _write_idx_set(monkeypatch, tmp_path, "mnist")
    payload = _idx(2049, np.array([1, 2]))
    _put(tmp_path, "mnist/t10k-labels-idx1-ubyte.gz", payload)
    _expect(monkeypatch, "mnist/t10k-labels-idx1-ubyte.gz", payload)
    with pytest.raises(data.DataIntegrityError, match="3 images"):
        data.mnist("test", root=tmp_path)


# --- binarisation -------------------------------------------------------------------


def test_threshold_binarisation_is_strictly_greater():
    images = torch.tensor([0.0, 0.5, 0.51, 1.0], dtype=torch.float64)
    binary = data.binarize(images)
    assert binary.dtype == torch.float32 and binary.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert data.binarize(images, threshold=0.0).tolist() == [0.0, 1.0, 1.0, 1.0]


def test_sampled_binarisation_static_and_dynamic():
    images = torch.full((200, 1, 28, 28), 0.3)
    images[0] = 0.0
    images[1] = 1.0

    def sample(seed):
        return data.binarize(images, method="sample", generator=torch.Generator().manual_seed(seed))

    static = sample(0)
    assert torch.equal(static, sample(0))  # seeded once: a fixed binarisation
    assert not torch.equal(static, sample(1))  # a fresh generator per epoch: resampled
    assert set(static.unique().tolist()) == {0.0, 1.0}
    assert static[0].sum() == 0 and static[1].min() == 1
    assert static[2:].mean().item() == pytest.approx(0.3, abs=0.005)


def test_binarize_rejects_values_outside_unit_interval_and_unknown_method():
    with pytest.raises(ValueError, match="images"):
        data.binarize(torch.tensor([0.2, 1.5]))
    with pytest.raises(ValueError, match="method"):
        data.binarize(torch.tensor([0.2]), method="round")
    with pytest.raises(ValueError, match="threshold"):
        data.binarize(torch.tensor([0.2]), threshold=2.0)


# --- Penn Treebank ----------------------------------------------------------------

TINY_PTB = {
    "train": " the cat sat \n\n the dog sat \n a cat <unk> \n",
    "valid": " the bird sat \n",
    "test": " the cat sat on the mat today \n cat \n",
}


@pytest.fixture
def tiny_ptb(monkeypatch, tmp_path):
    for split, text in TINY_PTB.items():
        relative = f"ptb/ptb.{split}.txt"
        _put(tmp_path, relative, text.encode())
        _expect(monkeypatch, relative, text.encode())
    return tmp_path


def test_vocab_is_specials_then_frequency_then_alphabetical(tiny_ptb):
    vocab = data.ptb(root=tiny_ptb).vocab
    assert vocab.itos == ["<pad>", "<sos>", "<eos>", "<unk>", "cat", "sat", "the", "a", "dog"]
    assert (vocab.pad_id, vocab.sos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert len(vocab) == 9 and vocab.stoi["dog"] == 8


def test_encode_decode_round_trip_and_unknown_words(tiny_ptb):
    vocab = data.ptb(root=tiny_ptb).vocab
    words = ["a", "dog", "sat"]
    assert vocab.decode(vocab.encode(words)) == words
    assert vocab.encode(["the", "zebra"]) == [6, vocab.unk_id]
    assert vocab.decode([1, 7, 8, 2, 4, 0]) == ["a", "dog"]  # stops at <eos>
    assert vocab.decode(torch.tensor([1, 7, 0, 0])) == ["a"]
    with pytest.raises(ValueError, match="list of words"):
        vocab.encode("a dog")
    with pytest.raises(ValueError, match="ids"):
        vocab.decode([1, 99])


def test_sentences_are_framed_padded_and_in_file_order(tiny_ptb):
    corpus = data.ptb(root=tiny_ptb)
    vocab = corpus.vocab
    train = corpus.train
    assert train.tokens.dtype == torch.int64 and train.lengths.tolist() == [5, 5, 5]  # empty line skipped
    assert train.tokens[0].tolist() == [1, *vocab.encode(["the", "cat", "sat"]), 2]
    assert vocab.decode(train.tokens[1]) == ["the", "dog", "sat"]
    assert train.tokens[2].tolist() == [1, 7, 4, 3, 2]
    assert vocab.decode(corpus.valid.tokens[0]) == ["the", "<unk>", "sat"]
    test = corpus.test
    assert test.lengths.tolist() == [9, 3] and test.tokens.shape == (2, 9)
    assert test.tokens[1].tolist() == [1, 4, 2, 0, 0, 0, 0, 0, 0]
    assert corpus.dropped == {"train": 0, "valid": 0, "test": 0}


def test_max_length_drops_long_sentences_and_counts_them(tiny_ptb):
    corpus = data.ptb(root=tiny_ptb, max_length=3)
    assert corpus.dropped == {"train": 0, "valid": 0, "test": 1}
    assert corpus.test.tokens.tolist() == [[1, 4, 2]]
    assert len(corpus.vocab) == 9  # the vocabulary does not depend on max_length
    with pytest.raises(ValueError, match="max_length"):
        data.ptb(root=tiny_ptb, max_length=0)


# --- dSprites-like generator --------------------------------------------------------


def _grid(**fixed):
    """Factor rows varying the one factor given as a range, others fixed (defaults in the middle)."""
    defaults = {"shape": 0, "scale": 5, "orientation": 0, "pos_x": 16, "pos_y": 16}
    defaults.update(fixed)
    varying = [name for name, value in defaults.items() if isinstance(value, range)]
    (name,) = varying
    rows = []
    for value in defaults[name]:
        rows.append([value if key == name else defaults[key] for key in data.DSPRITES_FACTORS])
    return torch.tensor(rows)


def _centroid(images):
    grid = torch.arange(64, dtype=torch.float32) + 0.5
    mass = images.sum((1, 2, 3))
    return (images.sum((1, 2)) @ grid) / mass, (images.sum((1, 3)) @ grid) / mass  # x (columns), y (rows)


def test_dsprites_like_factors_are_on_the_grid_without_repeats():
    images, factors = data.dsprites_like(n=2000, seed=3)
    assert images.shape == (2000, 1, 64, 64) and images.dtype == torch.float32
    assert factors.dtype == torch.int64 and factors.shape == (2000, 5)
    sizes = torch.tensor(list(data.DSPRITES_FACTORS.values()))
    assert bool((factors >= 0).all()) and bool((factors < sizes).all())
    assert len(torch.unique(factors, dim=0)) == 2000
    assert set(images.unique().tolist()) == {0.0, 1.0}
    assert bool((images.sum((1, 2, 3)) > 0).all())
    assert torch.equal(images, data.render_dsprites_like(factors))


def test_grid_order_matches_the_real_file():
    # the real latents_classes enumerate the grid in C order: shape slowest, pos_y fastest
    expected = torch.cartesian_prod(*(torch.arange(size) for size in data.DSPRITES_FACTORS.values()))
    assert torch.equal(data.sprites._grid_factors(torch.arange(len(expected))), expected)


def test_dsprites_like_is_determined_by_the_seed():
    images, factors = data.dsprites_like(n=50, seed=7)
    again_images, again_factors = data.dsprites_like(n=50, seed=7)
    assert torch.equal(factors, again_factors) and torch.equal(images, again_images)
    assert not torch.equal(factors, data.dsprites_like(n=50, seed=8)[1])


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_centroid_follows_position(shape):
    x_centre, y_centre = _centroid(data.render_dsprites_like(_grid(shape=shape, pos_x=range(32))))
    assert bool((x_centre.diff() > 0).all()) and float(y_centre.max() - y_centre.min()) < 0.5
    x_centre, y_centre = _centroid(data.render_dsprites_like(_grid(shape=shape, pos_y=range(32))))
    assert bool((y_centre.diff() > 0).all()) and float(x_centre.max() - x_centre.min()) < 0.5  # pos_y moves down


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_area_grows_with_scale(shape):
    area = data.render_dsprites_like(_grid(shape=shape, scale=range(6))).sum((1, 2, 3))
    assert bool((area.diff() > 0).all())
    assert 140 < area[-1] < 260  # shapes about 14-19 px across at scale 1, like dSprites


def test_orientation_turns_the_ellipse():
    images = data.render_dsprites_like(_grid(shape=1, orientation=range(0, 40, 10)))
    width = images.amax(2).sum((1, 2))  # occupied columns
    height = images.amax(3).sum((1, 2))
    assert bool((width[[0, 2]] > height[[0, 2]] + 5).all()) and bool((height[[1, 3]] > width[[1, 3]] + 5).all())


def test_orientation_angles_of_the_generator_and_of_the_real_file():
    generated, real = data.orientation_angles(), data.orientation_angles(real_file=True)
    assert generated.shape == real.shape == (40,) and generated.dtype == torch.float64
    torch.testing.assert_close(generated, torch.arange(40, dtype=torch.float64) * (2 * math.pi / 40))
    # the real file's latents_values column: np.linspace(0, 2 pi, 40), 0.16110732 apart, 2 pi included
    torch.testing.assert_close(real, torch.from_numpy(np.linspace(0, 2 * math.pi, 40)))
    assert real[1].item() == pytest.approx(0.16110732, abs=1e-8) and real[-1].item() == pytest.approx(2 * math.pi)
    # the renderer turns class k by the generated angle: a quarter turn of the ellipse is class 10
    turned = data.render_dsprites_like(_grid(shape=1, orientation=range(10, 11)))
    assert torch.equal(turned, data.render_dsprites_like(_grid(shape=1, orientation=range(30, 31))))


@pytest.mark.parametrize(
    "shape, generated, real",
    [("square", (10, 2 * math.pi / 40), (39, math.pi / 78)),  # real: 10 steps = a quarter turn + 2.3 degrees
     ("ellipse", (20, 2 * math.pi / 40), (39, math.pi / 39)),  # real: 20 steps = a half turn + 4.6 degrees
     ("heart", (40, 2 * math.pi / 40), (39, 2 * math.pi / 39))],  # real: classes 0 and 39 coincide
)
def test_distinct_orientations_count_the_symmetries_of_both_sets(shape, generated, real):
    for real_file, (count, closest) in ((False, generated), (True, real)):
        result = data.distinct_orientations(shape, real_file=real_file)
        assert result["count"] == count
        assert result["closest"] == pytest.approx(closest, rel=1e-9)
    with pytest.raises(ValueError, match="shape must be one of"):
        data.distinct_orientations("circle")


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_generated_orientations_show_as_many_images_as_counted(shape):
    name = list(data.SHAPE_SYMMETRY)[shape]
    images = data.render_dsprites_like(_grid(shape=shape, scale=5, orientation=range(40))).flatten(1)
    assert len(torch.unique(images, dim=0)) == data.distinct_orientations(name)["count"]  # 10, 20, 40
    period = 40 // data.SHAPE_SYMMETRY[name]
    assert torch.equal(images, images.roll(period, 0))  # class k and k + period: the same image


def test_every_sprite_stays_inside_the_frame():
    shape, scale, orientation, corner = torch.meshgrid(
        torch.arange(3), torch.arange(6), torch.arange(40), torch.arange(4), indexing="ij"
    )
    corner = corner.flatten()
    factors = torch.stack(
        [shape.flatten(), scale.flatten(), orientation.flatten(), (corner % 2) * 31, (corner // 2) * 31], dim=1
    )
    images = data.render_dsprites_like(factors)[:, 0]
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert border.item() == 0 and bool((images.sum((1, 2)) > 0).all())


def test_dsprites_like_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must"):
        data.dsprites_like(n=0)
    with pytest.raises(ValueError, match="factors"):
        data.render_dsprites_like(torch.tensor([[3, 0, 0, 0, 0]]))


# --- real dSprites loader on a fake file ---------------------------------------------


@pytest.fixture
def fake_dsprites(monkeypatch, tmp_path):
    count = 11
    imgs = np.zeros((count, 64, 64), dtype=np.uint8)
    imgs[np.arange(count), 0, np.arange(count)] = 1  # image i has pixel (0, i) on
    classes = np.zeros((count, 6), dtype=np.int64)
    classes[:, 1] = np.arange(count) % 3
    classes[:, 5] = np.arange(count)
    path = tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    path.parent.mkdir()
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64))
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(data.CHECKSUMS, data.files.DSPRITES_FILE, data.Checksum("md5", digest))
    monkeypatch.setattr(data.sprites, "_CHUNK", 4)  # stream the file in several blocks
    return tmp_path, imgs, classes


def test_dsprites_loader_reads_images_and_drops_the_colour_column(fake_dsprites):
    root, imgs, classes = fake_dsprites
    images, factors = data.dsprites(root=root)
    assert images.dtype == torch.float32 and images.shape == (11, 1, 64, 64)
    assert torch.equal(images[:, 0], torch.from_numpy(imgs).float())
    assert factors.dtype == torch.int64 and torch.equal(factors, torch.from_numpy(classes[:, 1:]))


def test_dsprites_subset_keeps_images_and_factors_aligned(fake_dsprites):
    root, _, _ = fake_dsprites
    images, factors = data.dsprites(root=root, subset=5, seed=2)
    chosen = torch.randperm(11, generator=torch.Generator().manual_seed(2))[:5]
    assert factors[:, 4].tolist() == chosen.tolist()
    assert images[:, 0, 0].argmax(1).tolist() == chosen.tolist()
    assert images.sum().item() == 5


def test_dsprites_is_verified_by_md5(fake_dsprites, monkeypatch):
    root, _, _ = fake_dsprites
    monkeypatch.setitem(data.CHECKSUMS, data.files.DSPRITES_FILE, data.Checksum("md5", "0" * 32))
    with pytest.raises(data.DataIntegrityError, match="expected md5 0{32}"):
        data.dsprites(root=root)


# --- the real files in $VAELAB_DATA -------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_real_data
@pytest.mark.parametrize(
    "loader, split, counts, mean",
    [
        (data.mnist, "train", MNIST_TRAIN_COUNTS, 0.1307),
        (data.mnist, "test", MNIST_TEST_COUNTS, 0.1325),
        (data.fashion_mnist, "train", [6000] * 10, 0.2860),
        (data.fashion_mnist, "test", [1000] * 10, 0.2868),
    ],
)
def test_real_image_sets(loader, split, counts, mean):
    images, labels = loader(split, root=REAL_DATA)
    assert images.shape == (sum(counts), 1, 28, 28) and images.dtype == torch.float32
    assert images.min().item() == 0.0 and images.max().item() == 1.0
    assert images.mean().item() == pytest.approx(mean, abs=5e-4)
    assert labels.dtype == torch.int64 and torch.bincount(labels).tolist() == counts


@needs_real_data
def test_real_ptb_matches_the_documented_counts():
    corpus = data.ptb(root=REAL_DATA)
    assert len(corpus.vocab) == 10_002 and corpus.vocab.itos[4:7] == ["the", "N", "of"]
    # README: lines and tokens including one <eos> per line; <sos> is ours, so drop it
    for split, lines, tokens in (("train", 42_068, 929_589), ("valid", 3_370, 73_760), ("test", 3_761, 82_430)):
        sentences = getattr(corpus, split)
        assert len(sentences) == lines
        assert int((sentences.lengths - 1).sum()) == tokens
        padding = int((sentences.tokens == corpus.vocab.pad_id).sum())
        assert padding == sentences.tokens.numel() - int(sentences.lengths.sum())
    # README's distinct words: 10,000 in train counting <eos>; 6,021 and 6,048 words in valid and test
    distinct = {split: len(torch.unique(getattr(corpus, split).tokens)) for split in ("train", "valid", "test")}
    assert distinct == {"train": 10_000 + 2, "valid": 6_021 + 3, "test": 6_048 + 3}  # + <pad>, <sos> (, <eos>)


# ----------------------------------------------------------------- dequantisation


def test_dequantize_spreads_each_grey_level_over_its_bin_inside_the_open_interval():
    k = torch.arange(256, dtype=torch.float64).repeat(400)
    grey = (k / 255).to(torch.float32)
    y = data.dequantize(grey, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and y.shape == grey.shape
    assert float(y.min()) > 0 and float(y.max()) < 1  # strictly inside, in float32 too
    u = y.double() * 256 - k  # uniform within each level's bin [k/256, (k+1)/256]: float32 may round onto its edge
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.var()) - 1 / 12) < 0.01


def test_dequantize_stays_below_one_where_float32_would_round_up():
    grey = torch.ones(1000)
    generator = torch.Generator().manual_seed(1)
    top = data.dequantize(grey, generator=generator)
    assert float(top.max()) <= 1 - 2**-24 < 1.0
    # (255 + u) / 256 for u close to 1 is 1.0 in float32 without the clamp
    assert torch.tensor((255 + (1 - 2**-30)) / 256, dtype=torch.float32).item() == 1.0


def test_dequantize_refuses_values_off_the_grey_level_grid():
    with pytest.raises(ValueError, match=r"images must be grey levels k / 255 .* these are not"):
        data.dequantize(torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match=r"images contains 1 NaN"):
        data.dequantize(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        data.dequantize(torch.tensor([0.0, 2.0]))
    assert data.on_level_grid(torch.tensor([0.0, 1 / 255, 1.0])) and not data.on_level_grid(torch.tensor([0.3]))
