"""Every product and input file name is built and parsed here, nowhere else.

Product paths are built only from well-formed keys: an observation id is the correlator's
stamp ``YYYY-MM-DDTHH:MM:SS`` and an hourly key ``YYYY-MM-DD-HH:MM``; anything else (``../x``,
an empty string, a path) raises :class:`~dsa_assets.exceptions.ProductNameError` before a path
is made, so no product can land outside the output directory.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from .constants import FILE_NAME_TIME_FORMAT
from .exceptions import ProductNameError

SUBBAND_RE = re.compile(r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})_sb(?P<sb>\d{2})\.hdf5$")
INCOMPLETE_SUFFIX = "_incomplete.hdf5"
OBSERVATION_ID_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
HOUR_KEY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:00$")
IMAGE_PRODUCTS = ("image", "residual", "psf", "model", "pb", "pbcor")
"""The FITS planes of an observation's published image set."""
MOSAIC_PRODUCTS = ("image", "noise", "weight", "residual", "psf")
"""The FITS planes of an hour's published mosaic."""


def observation_id(group_id: str) -> str:
    """``group_id`` if it is a well-formed observation id (a real UTC stamp), else
    ProductNameError."""
    if not isinstance(group_id, str) or not OBSERVATION_ID_RE.match(group_id):
        raise ProductNameError(f"{group_id!r} is not an observation id (YYYY-MM-DDTHH:MM:SS)")
    try:
        parse_time(group_id)
    except ValueError as exc:
        raise ProductNameError(f"{group_id!r} is not an observation id: {exc}") from None
    return group_id


def hour_key(key: str) -> str:
    """``key`` if it is a well-formed hourly partition key (``YYYY-MM-DD-HH:00``), else
    ProductNameError."""
    if not isinstance(key, str) or not HOUR_KEY_RE.match(key):
        raise ProductNameError(f"{key!r} is not an hourly partition key (YYYY-MM-DD-HH:00)")
    return key


def format_time(t: datetime) -> str:
    """UTC datetime -> ``YYYY-MM-DDTHH:MM:SS`` (the correlator's file-name stamp)."""
    return t.astimezone(UTC).strftime(FILE_NAME_TIME_FORMAT)


def parse_time(stamp: str) -> datetime:
    """``YYYY-MM-DDTHH:MM:SS`` -> timezone-aware UTC datetime."""
    return datetime.strptime(stamp, FILE_NAME_TIME_FORMAT).replace(tzinfo=UTC)


def subband_file_name(stamp: str, subband: int) -> str:
    """Final name of a subband file: ``<stamp>_sbNN.hdf5``."""
    return f"{stamp}_sb{subband:02d}.hdf5"


def incomplete_name(final_name: str) -> str:
    """Name the correlator writes under before renaming: ``<stamp>_sbNN_incomplete.hdf5``."""
    return final_name[: -len(".hdf5")] + INCOMPLETE_SUFFIX


def parse_subband_name(name: str) -> tuple[datetime, int] | None:
    """(file-open time as UTC datetime, subband index) of a complete subband file name, else None.

    Names still carrying the ``_incomplete`` suffix, and foreign names, give None.
    """
    m = SUBBAND_RE.match(Path(name).name)
    if m is None:
        return None
    return parse_time(m["ts"]), int(m["sb"])


def truth_file_name(stamp: str) -> str:
    """Simulator truth file written beside an observation's subbands."""
    return f"{stamp}_truth.json"


PRODUCT_ROOTS = ("ms", "calibrated", "caltables", "images", "mosaics")
"""The directories under the output directory that hold each kind of product, by date."""


def product_root(output_dir: Path, kind: str) -> Path:
    """``<output>/<kind>``: where one kind of product (``PRODUCT_ROOTS``) lives."""
    if kind not in PRODUCT_ROOTS:
        raise ProductNameError(f"no product kind {kind!r}; the kinds are {', '.join(PRODUCT_ROOTS)}")
    return Path(output_dir) / kind


def ms_name(group_id: str) -> str:
    """Measurement Set directory name of an observation (group id = canonical stamp)."""
    return f"{observation_id(group_id)}.ms"


def ms_path(output_dir: Path, group_id: str) -> Path:
    """Where an observation's Measurement Set lives: ``<output>/ms/<YYYY-MM-DD>/<stamp>.ms``."""
    return product_root(output_dir, "ms") / group_id[:10] / ms_name(group_id)


def image_dir(output_dir: Path, group_id: str) -> Path:
    """Where an observation's images live: ``<output>/images/<YYYY-MM-DD>/<stamp>/``, holding
    ``<stamp>-{image,residual,psf,model,pb,pbcor}.fits`` and ``<stamp>.png``. One directory per
    observation, so that the set is published (and replaced) in one rename."""
    return product_root(output_dir, "images") / observation_id(group_id)[:10] / group_id


def image_file(output_dir: Path, group_id: str, kind: str) -> Path:
    """One of an observation's published images: kind is image, residual, psf, model, pb or pbcor."""
    return image_dir(output_dir, group_id) / f"{group_id}-{kind}.fits"


def image_files(output_dir: Path, group_id: str, kinds=("image", "residual", "pb", "psf")) -> dict[str, Path]:
    """kind -> path of an observation's published images (what photometry and mosaics read)."""
    return {k: image_file(output_dir, group_id, k) for k in kinds}


def caltable_dir(output_dir: Path, group_id: str) -> Path:
    """Calibration solution of a calibrator observation: ``<output>/caltables/<date>/<stamp>/``
    holding ``<stamp>.K``, ``.B``, ``.G``, ``model.cl`` and ``solution.json``."""
    return product_root(output_dir, "caltables") / observation_id(group_id)[:10] / group_id


def calibrated_ms_path(output_dir: Path, group_id: str) -> Path:
    """Calibrated Measurement Set: ``<output>/calibrated/<date>/<stamp>.ms``."""
    return product_root(output_dir, "calibrated") / group_id[:10] / ms_name(group_id)


def mosaic_stem(key: str) -> str:
    """File-name stem of an hour's mosaic: the hourly key without colons."""
    return hour_key(key).replace(":", "")


def mosaic_dir(output_dir: Path, key: str) -> Path:
    """``<output>/mosaics/<YYYY-MM-DD>/<stem>/``, holding ``<stem>-{image,noise,weight,residual,psf}.fits``
    and ``<stem>.png``, published in one rename."""
    return product_root(output_dir, "mosaics") / key[:10] / mosaic_stem(key)


def mosaic_files(output_dir: Path, key: str) -> dict[str, Path]:
    """kind -> path of an hour's published mosaic products (image, noise, weight, residual, psf)."""
    d, stem = mosaic_dir(output_dir, key), mosaic_stem(key)
    return {kind: d / f"{stem}-{kind}.fits" for kind in MOSAIC_PRODUCTS}
