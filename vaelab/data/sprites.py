"""dSprites: the real file's loader, and a dSprites-like set rendered from the documented factor grid."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from .._checks import check_positive_int
from .files import DSPRITES_FILE, DataIntegrityError, fetch_file

__all__ = [
    'DSPRITES_FACTORS', 'SHAPE_SYMMETRY', 'distinct_orientations', 'dsprites', 'dsprites_like', 'orientation_angles',
    'render_dsprites_like',
]


#: Factors of variation of dSprites, in the order of the ``factors`` columns, with the
#: number of values each takes (Matthey et al., 2017). Colour, constant in dSprites, is left out.
DSPRITES_FACTORS: dict[str, int] = {"shape": 3, "scale": 6, "orientation": 40, "pos_x": 32, "pos_y": 32}
_GRID = tuple(DSPRITES_FACTORS.values())
_GRID_SIZE = math.prod(_GRID)  # 737,280
_IMAGE = 64
_CHUNK = 4096

#: Order of each shape's rotational symmetry, by shape class (0 square, 1 ellipse, 2 heart):
#: a turn by ``2 pi / order`` maps the shape onto itself (a square's quarter turn, an
#: ellipse's half turn; a heart has none).
SHAPE_SYMMETRY: dict[str, int] = {"square": 4, "ellipse": 2, "heart": 1}


def orientation_angles(*, real_file: bool = False) -> torch.Tensor:
    """The angle of each of the 40 orientation classes, in radians, counter-clockwise.

    The two sets differ:

    * generated (:func:`render_dsprites_like`, the default): ``2 pi k / 40`` for
      ``k = 0 .. 39``, 40 distinct angles 9 degrees apart, 2 pi excluded;
    * the real file (``real_file=True``): its ``latents_values`` column is
      ``linspace(0, 2 pi, 40)``, that is ``2 pi k / 39`` with 2 pi *included*, steps of
      9.23 degrees: classes 0 and 39 are the same angle, so the same image.

    Returns:
        ``(40,)`` float64 CPU tensor, radians in ``[0, 2 pi]``.
    """
    steps = DSPRITES_FACTORS["orientation"]
    k = torch.arange(steps, dtype=torch.float64)
    return k * (2 * math.pi / (steps - 1 if real_file else steps))


def distinct_orientations(shape: str, *, real_file: bool = False) -> dict:
    """How many different images the 40 orientation classes give one shape, all else fixed.

    Two classes show the same image when their angles differ by a multiple of the shape's
    symmetry turn ``2 pi / SHAPE_SYMMETRY[shape]``, so the count is that of the distinct
    angles modulo the turn. In the generated set a square's 40 classes show 10 images (each
    four times) and an ellipse's 20; in the real file every shape shows 39 (classes 0 and
    39 coincide), but a square's classes ``k`` and ``k + 10`` differ by a quarter turn plus
    2.3 degrees only: ``closest`` says how near the nearest two images are.

    Args:
        shape: ``"square"``, ``"ellipse"`` or ``"heart"``.
        real_file: the angles of the real file instead of the generated set
            (:func:`orientation_angles`).

    Returns:
        ``{"count": int, "closest": float}``: the number of distinct images, and the
        smallest turn between two of them modulo the symmetry, in radians.
    """
    if shape not in SHAPE_SYMMETRY:
        raise ValueError(f"shape must be one of {sorted(SHAPE_SYMMETRY)}, got {shape!r}")
    turn = 2 * math.pi / SHAPE_SYMMETRY[shape]
    folded = torch.remainder(orientation_angles(real_file=real_file), turn)
    folded = torch.where(turn - folded < 1e-9, torch.zeros_like(folded), folded)  # 2 pi k / order is 0
    values = torch.unique(folded)
    distinct = values[torch.cat([torch.tensor([True]), values.diff() > 1e-9])]
    gaps = torch.cat([distinct.diff(), (turn - distinct[-1] + distinct[0]).reshape(1)])
    return {"count": len(distinct), "closest": float(gaps.min())}


def _subset_indices(total: int, subset: int | None, seed: int, *, name: str) -> torch.Tensor:
    if subset is None:
        return torch.arange(total)
    subset = check_positive_int(name, subset)
    if subset > total:
        raise ValueError(f"{name} must be at most {total}, the number of images, got {subset}")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(total, generator=generator)[:subset]


def dsprites(*, root=None, subset: int | None = None, seed: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The real dSprites file (Matthey, Higgins, Hassabis and Lerchner, 2017), verified by md5.

    Needs ``dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (26 MB, from
    google-deepmind/dsprites-dataset) under a data root or a network connection. Without
    it, use :func:`dsprites_like`, which *generates* images on the same factor grid but is
    not the real dataset: its shapes are drawn by vaelab and differ pixel by pixel.

    Memory: the 737,280 images are 3.0 GB as uint8 and 12 GB as float32. The file is read
    as a stream, so ``subset=n`` keeps only the ``n`` chosen images in memory.

    Orientation class ``k`` of the file is the angle ``2 pi k / 39``
    (``linspace(0, 2 pi, 40)``, 2 pi included), not the ``2 pi k / 40`` of
    :func:`dsprites_like`: classes 0 and 39 are the same image for every shape
    (:func:`orientation_angles`).

    Args:
        root: a data root to look in first (see the module docstring for the order).
        subset: if given, this many images drawn without replacement (in drawn order),
            using ``seed``; ``dsprites_like(n=subset, seed=seed)`` draws the same factor
            combinations.
        seed: seed of the subset draw.
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, factors)``: images ``(N, 1, 64, 64)`` float32 in ``{0, 1}``; factors
        ``(N, 5)`` int64, the class indices of (shape, scale, orientation, pos_x, pos_y),
        see :data:`DSPRITES_FACTORS`.
    """
    path = fetch_file(DSPRITES_FILE, root=root)
    with np.load(path, allow_pickle=False) as archive:
        if "latents_classes" not in archive.files or "imgs" not in archive.files:
            raise DataIntegrityError(f"{path} lacks the arrays 'imgs' and 'latents_classes'")
        classes = archive["latents_classes"]
    total = len(classes)
    if classes.shape != (total, 6):
        raise DataIntegrityError(f"{path}: latents_classes has shape {classes.shape}, expected (N, 6)")
    chosen = _subset_indices(total, subset, seed, name="subset")
    images = _read_npz_rows(path, "imgs.npy", chosen.numpy(), total)
    factors = torch.from_numpy(classes[chosen.numpy(), 1:].astype(np.int64))
    return images.to(device), factors.to(device)


def _read_npz_rows(path: Path, member: str, rows: np.ndarray, total: int) -> torch.Tensor:
    """Stream ``rows`` of a (total, 64, 64) uint8 array out of an npz without loading all of it."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    out = torch.empty((len(rows), 1, _IMAGE, _IMAGE), dtype=torch.float32)
    row_bytes = _IMAGE * _IMAGE
    with zipfile.ZipFile(path) as archive, archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        if shape != (total, _IMAGE, _IMAGE) or dtype != np.uint8 or fortran_order:
            raise DataIntegrityError(
                f"{path}: imgs has shape {shape} and dtype {dtype}, expected ({total}, 64, 64) uint8"
            )
        position = 0  # index into sorted_rows
        for start in range(0, total, _CHUNK):
            if position == len(sorted_rows):
                break
            count = min(_CHUNK, total - start)
            block = stream.read(count * row_bytes)
            if len(block) != count * row_bytes:
                raise DataIntegrityError(f"{path}: imgs is truncated at image {start}")
            stop = position + int(np.searchsorted(sorted_rows[position:], start + count))
            if stop > position:
                chunk = np.frombuffer(block, dtype=np.uint8).reshape(count, _IMAGE, _IMAGE)
                picked = torch.from_numpy(chunk[sorted_rows[position:stop] - start].astype(np.float32))
                out[torch.from_numpy(order[position:stop]), 0] = picked
            position = stop
    return out


# Geometry of the generated sprites, in pixels (the image spans [0, 64] x [0, 64]).
_SQUARE_HALF_SIDE = 7.0  # 14 px square at scale 1
_ELLIPSE_SEMI_AXES = (9.5, 5.0)  # 19 x 10 px ellipse at scale 1
_HEART_UNIT = 7.0  # the implicit heart is 2.28 x 2.24 units: 16 x 16 px at scale 1
_HEART_CENTRE = 0.2935  # centroid height of the implicit heart, in its units
_MARGIN = 10.5  # > largest distance of any shape pixel from its centre (9.9 px)
_WINDOW = 24  # pixels per side of the patch that can hold a shape, 2 * _MARGIN + slack


def render_dsprites_like(factors: torch.Tensor, *, device=None) -> torch.Tensor:
    """Draw dSprites-like binary images for given factor class indices (vectorised, in chunks).

    A pixel is on when its centre lies inside the shape: the centre is moved into the
    shape's own frame (translate, rotate by minus the orientation, divide by the size)
    and tested against a square ``max(|u|, |v|) <= 1``, an ellipse ``u^2 + v^2 <= 1``
    with a 1.9 : 1 aspect, or the heart ``(u^2 + v^2 - 1)^3 - u^2 v^3 <= 0``.

    Args:
        factors: ``(N, 5)`` integer class indices of (shape, scale, orientation, pos_x,
            pos_y), each in ``[0, DSPRITES_FACTORS[name])``. Shapes are 0 square,
            1 ellipse, 2 heart; scale ``k`` is ``0.5 + 0.1 k``; orientation ``k`` is
            ``2 pi k / 40`` radians, counter-clockwise (the real file's class ``k`` is
            ``2 pi k / 39``: see :func:`orientation_angles`); pos_x moves the shape right and
            pos_y moves it down, from 10.5 px to 53.5 px, so every shape stays inside the frame.
        device: where to compute and put the images (default: the device of ``factors``).

    Returns:
        ``(N, 1, 64, 64)`` float32 in ``{0, 1}``.
    """
    if not isinstance(factors, torch.Tensor) or factors.is_floating_point() or factors.is_complex():
        raise ValueError("factors must be an integer torch.Tensor of class indices")
    if factors.dim() != 2 or factors.shape[1] != len(_GRID):
        raise ValueError(f"factors must have shape (N, {len(_GRID)}), got {tuple(factors.shape)}")
    sizes = torch.tensor(_GRID, device=factors.device)
    if bool(((factors < 0) | (factors >= sizes)).any()):
        raise ValueError(f"factors must lie in [0, size) per column, sizes {DSPRITES_FACTORS}")
    device = factors.device if device is None else torch.device(device)
    out = torch.zeros((len(factors), 1, _IMAGE, _IMAGE), dtype=torch.float32, device=device)
    for start in range(0, len(factors), _CHUNK):
        _rasterise(factors[start : start + _CHUNK].to(device), out[start : start + _CHUNK, 0])
    return out


def _rasterise(factors: torch.Tensor, canvas: torch.Tensor) -> None:
    """Set the pixels inside each sprite to 1 in ``canvas`` (B, 64, 64), which must be zero."""
    device = factors.device
    count = len(factors)
    shape, scale_index, orientation_index, pos_x, pos_y = factors.long().unbind(1)
    scale = 0.5 + 0.1 * scale_index.float()
    angle = orientation_index.float() * (2 * math.pi / DSPRITES_FACTORS["orientation"])
    travel = _IMAGE - 2 * _MARGIN
    centre_x = _MARGIN + travel * pos_x.float() / (DSPRITES_FACTORS["pos_x"] - 1)
    centre_y = _MARGIN + travel * pos_y.float() / (DSPRITES_FACTORS["pos_y"] - 1)
    # Only a _WINDOW x _WINDOW patch around the centre can be inside a shape, so test
    # those pixels alone (a seventh of the image) and paste the patch into the canvas.
    left = torch.floor(centre_x - _MARGIN - 0.5).long().clamp(0, _IMAGE - _WINDOW)
    top = torch.floor(centre_y - _MARGIN - 0.5).long().clamp(0, _IMAGE - _WINDOW)
    offset = torch.arange(_WINDOW, device=device)
    columns = left[:, None] + offset  # (B, W)
    rows = top[:, None] + offset
    dx = (columns.float() + 0.5 - centre_x[:, None])[:, None, :]  # (B, 1, W), rightwards
    dy = (centre_y[:, None] - rows.float() - 0.5)[:, :, None]  # (B, W, 1), upwards
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    inside = torch.empty((count, _WINDOW, _WINDOW), dtype=torch.bool, device=device)
    extents = {0: (_SQUARE_HALF_SIDE, _SQUARE_HALF_SIDE), 1: _ELLIPSE_SEMI_AXES, 2: (_HEART_UNIT, _HEART_UNIT)}
    for shape_id, (extent_u, extent_v) in extents.items():
        members = (shape == shape_id).nonzero().squeeze(1)
        if len(members) == 0:
            continue
        c, s, size = cos[members], sin[members], scale[members, None, None]
        # rotate by minus the angle, then divide by the size; the divisions touch (B, 1, 1) tensors only
        u = dx[members] * (c / (extent_u * size)) + dy[members] * (s / (extent_u * size))
        v = dy[members] * (c / (extent_v * size)) - dx[members] * (s / (extent_v * size))
        if shape_id == 0:
            inside[members] = torch.maximum(u.abs(), v.abs()) <= 1
        elif shape_id == 1:
            inside[members] = u.square() + v.square() <= 1
        else:
            v = v + _HEART_CENTRE
            u2 = u.square()
            inside[members] = (u2 + v.square() - 1).pow(3) <= u2 * v.pow(3)
    image = torch.arange(count, device=device)[:, None, None]
    canvas[image, rows[:, :, None], columns[:, None, :]] = inside.to(torch.float32)


def dsprites_like(*, n: int | None = None, seed: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A dSprites-like set, generated: binary 64 x 64 sprites on dSprites' factor grid.

    This is **not** the real dSprites dataset (use :func:`dsprites` for that). It uses the
    same grid of classes (Matthey et al., 2017): 3 shapes (square, ellipse, heart), 6
    scales linspace(0.5, 1), 40 orientations and 32 x 32 positions linspace(0, 1); but
    vaelab draws the shapes itself (:func:`render_dsprites_like`), so sizes, position
    ranges and pixel edges differ from the real images. The orientations differ too: here
    class ``k`` is ``2 pi k / 40`` (40 distinct angles), in the real file
    ``linspace(0, 2 pi, 40)``, ``2 pi k / 39``, whose classes 0 and 39 are the same image
    (:func:`orientation_angles`, :func:`distinct_orientations`). Good for
    disentanglement experiments where the ground-truth factors matter and the real file
    is unavailable.

    Memory: ``n=None`` generates the full grid of 737,280 images, which is 12 GB as
    float32 (rendered in chunks of 4,096, but the output itself must fit in memory).
    Prefer a subset.

    Args:
        n: number of grid points drawn at random without replacement (in drawn order),
            or ``None`` for the full grid in order (shape slowest, pos_y fastest, as in
            the real file).
        seed: seed of the draw; the same seed gives the same images and factors.
        device: where to render and put the tensors (default CPU).

    Returns:
        ``(images, factors)``: images ``(N, 1, 64, 64)`` float32 in ``{0, 1}``; factors
        ``(N, 5)`` int64 class indices of (shape, scale, orientation, pos_x, pos_y), see
        :data:`DSPRITES_FACTORS`.
    """
    factors = _grid_factors(_subset_indices(_GRID_SIZE, n, seed, name="n")).to(device)
    return render_dsprites_like(factors), factors


def _grid_factors(index: torch.Tensor) -> torch.Tensor:
    """Class indices (N, 5) of flat grid indices, in C order like the real file (pos_y fastest)."""
    columns = []
    for size in reversed(_GRID):
        columns.append(index % size)
        index = index // size
    return torch.stack(columns[::-1], dim=1)
