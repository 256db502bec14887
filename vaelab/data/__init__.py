"""Datasets as whole tensors: MNIST, Fashion-MNIST, Penn Treebank, dSprites.

Every loader returns complete tensors (no per-sample ``Dataset`` objects and no
torchvision), so a chapter can slice, binarise and batch them itself, and the training
loop can keep a whole set on the device.

=====================================  ==================================================
module                                 holds
=====================================  ==================================================
:mod:`vaelab.data.files`               where files are looked for, checksums, downloads
:mod:`vaelab.data.images`              MNIST, Fashion-MNIST, binarisation, dequantisation
:mod:`vaelab.data.text`                the vocabulary, sentence tensors, Penn Treebank
:mod:`vaelab.data.sprites`             dSprites and the dSprites-like renderer
=====================================  ==================================================

Every name is importable from here: ``from vaelab import data as vdata; vdata.mnist("train")``.
See :mod:`vaelab.data.files` for where the files come from and how they are verified.
"""
from . import files, images, sprites, text
from .files import (
    CHECKSUMS,
    DOWNLOAD_DEADLINE,
    DOWNLOAD_TIMEOUT,
    DSPRITES_FILE,
    MIRRORS,
    Checksum,
    DataIntegrityError,
    DownloadError,
    cache_dir,
    fetch_file,
    file_version,
)
from .images import binarize, dequantize, fashion_mnist, mnist, on_level_grid
from .sprites import (
    DSPRITES_FACTORS,
    SHAPE_SYMMETRY,
    distinct_orientations,
    dsprites,
    dsprites_like,
    orientation_angles,
    render_dsprites_like,
)
from .text import PTBCorpus, Sentences, Vocab, ptb

__all__ = sorted(files.__all__ + images.__all__ + sprites.__all__ + text.__all__)
