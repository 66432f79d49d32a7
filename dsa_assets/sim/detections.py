"""Simulated source-finder output over many epochs, for measuring association: a sky of
persistent sources (the brighter ones in a reference catalogue), close pairs, and transients,
detected above 5 sigma in each epoch at positions scattered by their fit errors (Condon 1997)
and by an offset shared by the whole image (calibration phases), which moves from epoch to
epoch. :func:`associate_epochs` runs them through the same association and products database
as the photometry asset; :func:`scores` measures purity and completeness against the truth.

Fluxes are in units of the image noise (signal-to-noise), angles in degrees unless named
``_arcsec``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import association, catalogue

DETECT_SNR = 5.0


@dataclass(frozen=True)
class DetectionSky:
    """The truth: every source's name, position and mean signal-to-noise; which are in the
    reference catalogue; for transients, the epochs (indices) in which they shine."""

    names: list[str]
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    snr: np.ndarray
    in_catalogue: np.ndarray
    transient_epochs: dict[int, range]

    def catalogue(self) -> list[catalogue.CatalogueSource]:
        return [catalogue.CatalogueSource(self.names[i], float(self.ra_deg[i]), float(self.dec_deg[i]), float(self.snr[i]))
                for i in np.flatnonzero(self.in_catalogue)]


@dataclass(frozen=True)
class Epoch:
    image_id: str
    epoch_unix: float
    detections: list[dict]
    """As :meth:`ProductsDB.record_photometry` takes them, with ``truth``: the source's index."""


def sky(n_sources: int = 400, n_pairs: int = 20, n_transients: int = 10, n_epochs: int = 30,
        field_radius_deg: float = 1.5, beam_arcsec: float = 30.0, centre=(150.0, 55.0),
        catalogue_snr: float = 15.0, seed: int = 0) -> DetectionSky:
    """Sources uniform over a disc, signal-to-noise from N(>S) ~ S^-0.9 above 3 (so the faint
    ones come and go across the 5-sigma threshold); ``n_pairs`` companions 1.2-2 beams from a
    random source; ``n_transients`` sources that shine for 1-4 consecutive epochs. Those above
    ``catalogue_snr`` are in the catalogue."""
    rng = np.random.default_rng(seed)
    n = n_sources + n_pairs + n_transients
    r = field_radius_deg * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    dec = centre[1] + r * np.sin(phi)
    ra = centre[0] + r * np.cos(phi) / np.cos(np.radians(dec))
    snr = 3.0 * rng.uniform(0, 1, n) ** (-1 / 0.9)
    snr = np.minimum(snr, 3000.0)
    for k in range(n_pairs):  # companions of random persistent sources
        i, j = rng.integers(n_sources), n_sources + k
        sep = rng.uniform(1.2, 2.0) * beam_arcsec / 3600
        angle = rng.uniform(0, 2 * np.pi)
        dec[j] = dec[i] + sep * np.sin(angle)
        ra[j] = ra[i] + sep * np.cos(angle) / np.cos(np.radians(dec[i]))
    transients = {}
    for k in range(n_transients):
        j = n_sources + n_pairs + k
        start = int(rng.integers(1, n_epochs))
        transients[j] = range(start, min(n_epochs, start + int(rng.integers(1, 5))))
        snr[j] = rng.uniform(8, 40)
    in_cat = (snr >= catalogue_snr) & ~np.isin(np.arange(n), list(transients))
    names = [catalogue.iau_name(a, d, "TRUE") + f"-{i}" for i, (a, d) in enumerate(zip(ra, dec))]
    return DetectionSky(names, ra, dec, snr, in_cat, transients)


def epochs(truth: DetectionSky, n_epochs: int = 30, beam_arcsec: float = 30.0, systematic_arcsec: float = 3.0,
           cadence_s: float = 86164.0905, seed: int = 1, stated_systematic_arcsec: float | None = None) -> list[Epoch]:
    """Each epoch's detections: every source (transients only in their epochs) measured with
    unit noise and detected above 5 sigma, its position scattered by Condon's errors at its
    measured signal-to-noise and by the epoch's offset (Gaussian, ``systematic_arcsec`` per
    axis). The errors given with each detection are those the photometry stage would give,
    with ``stated_systematic_arcsec`` (default: the true one) as the systematic part."""
    rng = np.random.default_rng(seed)
    beam = (beam_arcsec, beam_arcsec, 0.0)
    out = []
    for e in range(n_epochs):
        shine = np.array([i not in truth.transient_epochs or e in truth.transient_epochs[i]
                          for i in range(len(truth.names))])
        measured = truth.snr + rng.normal(0, 1, len(truth.snr))
        seen = np.flatnonzero(shine & (measured >= DETECT_SNR))
        fit_ra, fit_dec = association.position_errors(measured[seen], beam, 0.0)
        shift = rng.normal(0, systematic_arcsec, 2)
        stated = systematic_arcsec if stated_systematic_arcsec is None else stated_systematic_arcsec
        err_ra, err_dec = np.hypot(fit_ra, stated), np.hypot(fit_dec, stated)
        dec = truth.dec_deg[seen] + (rng.normal(0, fit_dec) + shift[1]) / 3600
        ra = truth.ra_deg[seen] + (rng.normal(0, fit_ra) + shift[0]) / 3600 / np.cos(np.radians(dec))
        detections = [{"truth": int(i), "source_name": None, "ra_deg": float(a) % 360, "dec_deg": float(d),
                       "ra_err_arcsec": float(ea), "dec_err_arcsec": float(ed), "flux_jy": float(s), "flux_err_jy": 1.0,
                       "local_rms_jy": 1.0, "snr": float(s), "flags": ""}
                      for i, a, d, ea, ed, s in zip(seen, ra, dec, err_ra, err_dec, measured[seen])]
        out.append(Epoch(f"epoch{e:04d}", 1.8e9 + e * cadence_s, detections))
    return out


def associate_epochs(db, truth: DetectionSky, all_epochs: list[Epoch], beam_arcsec: float = 30.0,
                     catalogue_error_arcsec: float = 2.0) -> None:
    """Each epoch as the photometry asset records an image: detections associated with the
    catalogue and the uncatalogued sources found so far (de Ruiter), then recorded, the rest
    beginning new sources. ``db``: a ProductsDB."""
    cat = truth.catalogue()
    db.record_catalogue(cat)
    centre_ra, centre_dec = float(np.median(truth.ra_deg)), float(np.median(truth.dec_deg))
    radius = float(np.max(catalogue.separation_deg(cat, centre_ra, centre_dec))) if cat else 1.0
    limit = association.MAX_SEPARATION_BEAMS * beam_arcsec
    for epoch in all_epochs:
        known = association.known_positions(cat + db.uncatalogued_positions(), catalogue_error_arcsec)
        positions = [association.Position("", d["ra_deg"], d["dec_deg"], d["ra_err_arcsec"], d["dec_err_arcsec"])
                     for d in epoch.detections]
        rows = []
        for d, (name, r) in zip(epoch.detections, association.associate(positions, known, limit)):
            rows.append({**{k: v for k, v in d.items() if k != "truth"}, "source_name": name,
                         "de_ruiter": r if name else None})
        db.record_photometry({"image_id": epoch.image_id, "kind": "observation", "path": epoch.image_id,
                              "epoch_unix": epoch.epoch_unix, "centre_ra_deg": centre_ra, "centre_dec_deg": centre_dec,
                              "radius_deg": radius}, [], rows, max_separation_arcsec=limit)


@dataclass(frozen=True)
class Scores:
    """Association against the truth. purity: the fraction of identities (sources with
    detections) whose detections all come from one true source; completeness: the fraction of
    true sources detected at least twice whose detections all went to one identity; transients:
    those detected that got an identity of their own (not a catalogue source's)."""

    n_detections: int
    n_identities: int
    purity: float
    completeness: float
    transients_found: int
    transients_detected: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def scores(db, truth: DetectionSky, all_epochs: list[Epoch]) -> Scores:
    from sqlalchemy import select

    from ..products import detections

    with db.engine.connect() as conn:
        assigned = {(r.image_id, r.seq): r.source_name for r in conn.execute(
            select(detections.c.image_id, detections.c.seq, detections.c.source_name))}
    by_identity: dict[str, set[int]] = {}
    by_truth: dict[int, set[str]] = {}
    count: dict[int, int] = {}
    for epoch in all_epochs:
        for seq, d in enumerate(epoch.detections):
            name = assigned[(epoch.image_id, seq)]
            by_identity.setdefault(name, set()).add(d["truth"])
            by_truth.setdefault(d["truth"], set()).add(name)
            count[d["truth"]] = count.get(d["truth"], 0) + 1
    repeated = [t for t, c in count.items() if c >= 2]
    catalogued = {truth.names[i] for i in np.flatnonzero(truth.in_catalogue)}
    detected_transients = [t for t in truth.transient_epochs if t in by_truth]
    own = [t for t in detected_transients if len(by_truth[t]) == 1 and not by_truth[t] & catalogued
           and by_identity[next(iter(by_truth[t]))] == {t}]
    return Scores(sum(count.values()), len(by_identity),
                  float(np.mean([len(v) == 1 for v in by_identity.values()])),
                  float(np.mean([len(by_truth[t]) == 1 for t in repeated])) if repeated else 1.0,
                  len(own), len(detected_transients))
