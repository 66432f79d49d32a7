"""Peeling: bright sources subtracted from the visibilities, each with its own antenna gains.

A source in the sidelobes is seen through a part of each dish's beam the calibrator never
probed, and its modelled position and response carry errors the field's calibration cannot
fix (at 3.3 deg, Cas A sits on the steep side of the first null, where 1 arcsec of position
changes its response by a percent). So it is subtracted with direction-dependent gains: for
each source, brightest first, its model (beam, spectrum and the data's time and bandwidth
smearing, :func:`sky_model.predict_model`) is fitted to the visibilities with one complex gain
per antenna, polarisation, integration and subband (StEFCal: Salvini & Wijnholds 2014,
A&A 571, A97; ``solution_bands``), and g_i conj(g_j) M_ij is taken away. Gains so free
also take up part of any source missing from the model they are solved against, and give it
back as artefacts around the peeled source (measured at 24 antennas: 13% of a source 0.1 deg
away; and in a realistic field, stripes through a peeled 2.6 Jy source along the array's arms
at 1% of it, which passed as new sources in every observation), so the gains are solved
against the sky the data hold (:func:`sky_context`: the reference catalogue's sources above a
few mJy apparent, wherever they are, and the candidates not yet subtracted) and only the
source is subtracted. What is left of each source is measured as the projection of the data
onto its model before and after (1: all of it, 0: none).

Candidates (:func:`bright_sources`): the A-team (Cas A, Cyg A, Tau A, Vir A) and reference
catalogue sources whose apparent flux density (flux x beam response at mid-observation) exceeds
the configured level outside the image, or whose apparent flux at transit does inside it. A source inside the
image drifts through the beam during the observation, its apparent flux changing by percents,
which CLEAN's constant sky cannot follow: the difference is left as sidelobes that change from
one observation to the next around it. Such a source is subtracted likewise, and every peeled
source inside the image is put back as the restoring beam at the flux peeling took
(:func:`restore`), so the image keeps it and loses its sidelobes. The fainter sky outside the
image (:func:`outside_sky`) is subtracted as predicted, all of it in one pass. Plain Python:
casacore tables and numpy.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..calibrators import A_TEAM
from ..catalogue import separation_deg
from ..geometry import airy_power_beam
from .ms_inspect import casa_table, channel_frequencies, observation_span, pointing_directions, radec_unit, row_chunks
from .sky_model import SourceModel, add_data_column, direction_cosines, model_chunks, predict_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeelingConfig:
    """What to peel and how. Flux densities apparent (Jy at 1.4 GHz times the beam response at
    mid-observation); angles in degrees."""

    a_team_above_jy: float = 0.5
    """An A-team source is peeled when its apparent flux exceeds this."""
    above_jy: float = 0.3
    """A reference-catalogue source outside the image is peeled above this: CLEAN never sees
    it, and its sidelobes fall on the image undeconvolved (in the demo a 0.55 Jy one 0.25 deg
    beyond an image's edge put three 6-10 sigma false new sources there); fainter ones are
    subtracted as predicted (``subtract_above_jy``)."""
    subtract_above_jy: float = 0.01
    """Every other reference-catalogue source outside the image above this apparent flux is
    subtracted as predicted (its model through the calibrated gains, no solve: too faint for
    gains of its own), all in one pass (inf: none). A 5-minute snapshot's dirty beam keeps 1-4%
    rms sidelobes out to 2 deg (``bench/psf_sidelobes.py``), so at the full array's noise the
    sky outside the image weighs on an image's rms: in an observation of the realistic sky
    with that noise (``bench/outside_sky.py``, 48 antennas) the residual rms was 1.78 mJy/beam
    with the 3 sources above the peeling level subtracted, 1.38 with the 51 above 10 mJy
    apparent, 1.36 with all 773."""
    image_half_width_deg: float = 1.7
    """The image reaches this far (deg) from the phase centre along each axis (the imaging
    settings' size x cell / 2): a source inside that square is in the image."""
    in_field_above_jy: float = 0.5
    """A source inside the image is peeled when its apparent flux at transit (the most the beam
    gives it) exceeds this, and restored into the image at the flux peeling took (inf: none; the
    image's sources are then left to deconvolution)."""
    max_sources: int = 8
    """At most this many (the brightest)."""
    solution_integrations: int = 1
    """Integrations per gain solution."""
    solution_bands: int = 16
    """The band is cut into this many equal runs of channels, each with its own gains (1: one
    solution over the band; 16: one per subband). Solved against the sky the data hold, both
    leave a full-scale Cas A transit at the rms of the field without it (``bench/peeling.py
    --full-scale``; against the 0.5 deg neighbourhood alone, per subband took up some of the
    sky and left it 10% above); per subband follows each dish's chromatic sidelobes and
    lowered the two-hour false-variable bench's rms 6% and its false variables 4 -> 1."""
    cycles: int = 2
    """Passes over the peeled sources. In the first, each source's gains are solved against the
    catalogue's models of the candidates not yet subtracted, which for a source seen through a
    sidelobe can be percents wrong; in each further pass every source is put back with its last
    gains and solved again against the sky left once the others have been taken with theirs.
    Measured (``bench/field_peeling.py --first 23``: a 12.5 Jy source at 5.6 Jy apparent peeled
    while Cas A sat in a sidelobe at 4.3 Jy apparent), two passes left 1.53 mJy/beam and no
    uncatalogued detection where one left 2.04 and five beside the source."""
    context_above_jy: float = 0.01
    """Catalogue sources whose apparent flux exceeds this join the model every peeled source's
    gains are solved against (not subtracted; :func:`sky_context`) ..."""
    max_context: int = 300
    """... at most this many, the brightest (a realistic field at Dec +63 has ~140 above 10 mJy)."""
    iterations: int = 60
    solve_gains: bool = True
    """False: subtract the model as predicted (unit gains), as a plain model subtraction
    (CASA ``uvsub``, WSClean ``-predict``) would."""
    min_presence: float = 0.5
    """A source is subtracted only if the data hold at least this fraction of its model
    (fitted jointly with the other candidates and the sky around them, :func:`presence`) ..."""
    min_significance: float = 10.0
    """... at this many times that fit's noise. Gains solved towards a source that is
    not there (a wrong catalogue entry, a model in a null) would fit the noise and the field's
    own sources, and take them away."""


@dataclass(frozen=True)
class PeeledSource:
    """One peeled source. Flux densities in Jy (apparent: at mid-observation through the beam,
    at the band centre); angles in degrees."""

    name: str
    ra_deg: float
    dec_deg: float
    offset_deg: float
    model_apparent_jy: float
    solved_apparent_jy: float
    """What peeling took from the data: the model's apparent flux times the share of the model
    subtracted (the projection of g_i g_j* M_ij onto M_ij). Unbiased by the gains' noise, which
    their median power |g|^2 is not (at 20 antennas and the real SEFD it read 3-12% high)."""
    remaining_before: float
    """Projection of the data onto the source's model over the model's power: ~1 before."""
    remaining_after: float
    """The same after peeling: what is left of the source (0: all of it removed)."""
    gain_phase_scatter_deg: float
    """Robust scatter of the solved gain phases: how far the data's source is from the model."""
    seconds: float
    subtracted: bool = True
    """False: not found in the data (presence or significance below the configured levels), left alone."""
    significance: float = float("nan")
    """The share of its model the data hold (:func:`presence`, fitted jointly) over its noise."""
    context_sources: int = 0
    """Other sources in the model the gains were solved against (:func:`sky_context` and the
    candidates not yet subtracted)."""
    solved_flux_jy: float = float("nan")
    """Flux density at the band's mean frequency: the model's times the share subtracted. Where
    the source lies inside the image, :func:`restore` puts it back at this flux: what was taken."""

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def apparent_flux_jy(sources, pointing_unit: np.ndarray, freq_hz: float, diameter_m: float) -> np.ndarray:
    """Flux density x Airy power response (Jy) of ``sources`` (anything with ra_deg, dec_deg,
    flux_at) for a beam pointed at ``pointing_unit`` (ICRS unit vector)."""
    if not len(sources):
        return np.zeros(0)
    unit = radec_unit(np.radians([s.ra_deg for s in sources]), np.radians([s.dec_deg for s in sources]))
    beam = airy_power_beam(np.clip(unit @ pointing_unit, -1, 1), freq_hz, diameter_m)
    return beam * np.array([float(s.flux_at(freq_hz)) for s in sources])


@dataclass(frozen=True)
class _Observation:
    """What choosing and recording peeled sources needs of a Measurement Set: the pointing at
    mid-observation (ICRS unit vector), the beam centre (ICRS deg), the band's mean frequency
    (Hz) and the dish diameter (m)."""

    pointing: np.ndarray
    centre_ra_deg: float
    centre_dec_deg: float
    freq_hz: float
    diameter_m: float
    mid: object

    @classmethod
    def of(cls, ms_path: Path | str) -> _Observation:
        from .ms_inspect import dish_diameter_m

        span = observation_span(ms_path)
        times = _times(ms_path)
        pointing = pointing_directions(ms_path, times[[len(times) // 2]])[0]
        return cls(pointing, span.centre_ra_deg, span.centre_dec_deg, float(np.mean(channel_frequencies(ms_path))),
                   dish_diameter_m(ms_path), span.mid)

    def apparent_jy(self, sources) -> np.ndarray:
        return apparent_flux_jy(sources, self.pointing, self.freq_hz, self.diameter_m)

    def transit_apparent_jy(self, sources) -> np.ndarray:
        """Flux density x beam response (Jy) of ``sources`` at their transit, the most a transit
        array's fixed beam gives them: the beam centre at the source's right ascension and the
        pointing's declination. (Both in ICRS: the diurnal circle is the precessed pole's, which
        moves the closest approach of a source within the image by under 0.01 deg.)"""
        if not len(sources):
            return np.zeros(0)
        offset = np.radians([s.dec_deg for s in sources]) - np.arcsin(np.clip(self.pointing[2], -1, 1))
        beam = airy_power_beam(np.cos(offset), self.freq_hz, self.diameter_m)
        return beam * np.array([float(s.flux_at(self.freq_hz)) for s in sources])

    def offsets_deg(self, sources) -> np.ndarray:
        return separation_deg(sources, self.centre_ra_deg, self.centre_dec_deg)

    def in_image(self, sources, half_width_deg: float) -> np.ndarray:
        """Whether each source lies in an image centred on the phase centre reaching
        ``half_width_deg`` along each axis: |l| and |m| (the SIN projection's direction cosines,
        which the image's pixels sample evenly) within it, in the front hemisphere."""
        l, m, n = direction_cosines(np.radians([s.ra_deg for s in sources]), np.radians([s.dec_deg for s in sources]),
                                    np.radians(self.centre_ra_deg), np.radians(self.centre_dec_deg))
        edge = np.radians(half_width_deg)
        return (np.abs(l) <= edge) & (np.abs(m) <= edge) & (n > 0)


def bright_sources(ms_path: Path | str, catalogue_sources=(), config: PeelingConfig = PeelingConfig()) -> list[SourceModel]:
    """The sources to peel from ``ms_path``, brightest (apparent) first: the A-team above
    ``a_team_above_jy`` and above the horizon, and the VLA calibrators (the bright sky, with
    1.4 GHz fluxes) and ``catalogue_sources`` (the reference catalogue) above ``above_jy``
    outside the image and above ``in_field_above_jy`` at its transit inside it (so a source
    is treated alike in every observation of its passage through the image: judged by its
    apparent flux of the moment, one crossing the level mid-transit was peeled and restored in
    some observations and left to CLEAN in others, and the two leave different artefacts,
    which came and went as false new sources beside it). A source in several of these counts
    once (within 1 arcmin)."""
    from ..calibrators import catalogue as vla_calibrators

    obs = _Observation.of(ms_path)
    lowest = min(config.above_jy, config.in_field_above_jy)
    a_team = [SourceModel.from_catalogue(s) for s in A_TEAM if _above_horizon(s, obs.mid)]
    others = [SourceModel.from_calibrator(c) for c in vla_calibrators() if c.flux_jy > lowest]
    others += [SourceModel.from_catalogue(s) for s in catalogue_sources if s.flux_jy > lowest]
    picked = []
    for s, a in zip(a_team, obs.apparent_jy(a_team)):
        if a > config.a_team_above_jy:
            picked.append((float(a), s))
    inside = obs.in_image(others, config.image_half_width_deg) if others else []
    for s, a, peak, in_image in zip(others, obs.apparent_jy(others), obs.transit_apparent_jy(others), inside):
        if (peak > config.in_field_above_jy) if in_image else (a > config.above_jy):
            picked.append((float(a), s))
    unique: list[tuple[float, SourceModel]] = []
    for a, s in sorted(picked, key=lambda p: -p[0]):
        if not unique or separation_deg([t for _, t in unique], s.ra_deg, s.dec_deg).min() > 1 / 60:
            unique.append((a, s))
    return [s for _, s in unique[: config.max_sources]]


def outside_sky(ms_path: Path | str, catalogue_sources, considered, config: PeelingConfig = PeelingConfig()
                ) -> list[tuple[SourceModel, float]]:
    """The reference catalogue's sources outside the image above ``subtract_above_jy`` apparent
    (with their apparent flux, Jy), brightest first, leaving out those within 1 arcmin of a
    source peeling ``considered`` (peeled, or left because the data did not hold it)."""
    if not np.isfinite(config.subtract_above_jy) or not len(catalogue_sources):
        return []
    obs = _Observation.of(ms_path)
    models = [SourceModel.from_catalogue(s) for s in catalogue_sources]
    apparent = obs.apparent_jy(models)
    keep = (apparent > config.subtract_above_jy) & ~obs.in_image(models, config.image_half_width_deg)
    picked = [(models[i], float(apparent[i])) for i in np.flatnonzero(keep)[np.argsort(-apparent[keep])]]
    if considered:
        picked = [(m, a) for m, a in picked if separation_deg(list(considered), m.ra_deg, m.dec_deg).min() > 1 / 60]
    return picked


def sky_beyond(ms_path: Path | str, model: list[SourceModel], catalogue_sources,
               config: PeelingConfig = PeelingConfig()) -> tuple[list[SourceModel], list[SourceModel]]:
    """The sources ``ms_path`` may hold beyond a calibrator's ``model``, each more than 1 arcmin
    from every source of it, at ``config``'s levels: (those peeling would take,
    :func:`bright_sources`: the A-team and bright sources outside the image; the fainter sky
    outside the image, :func:`outside_sky`). Left out of the model, their flux biases every
    gain by about its share of the calibrator's apparent flux, and noisily per channel."""
    bright = [s for s in bright_sources(ms_path, catalogue_sources, config)
              if not model or separation_deg(model, s.ra_deg, s.dec_deg).min() > 1 / 60]
    return bright, [m for m, _ in outside_sky(ms_path, catalogue_sources, [*model, *bright], config)]


def presence(ms_path: Path | str, groups: list[list[SourceModel]], column: str, known_column: str | None = None,
             sum_column: str | None = None) -> list[tuple[float, float]]:
    """How much of each group of sources ``column`` of ``ms_path`` (calibrated data) holds:
    the least-squares scale of each group's model (beam, smearing), fitted jointly over the
    unflagged cross-correlations with ``known_column`` (a model already known to be in the
    data: a calibrator's MODEL_DATA). Fitted alone, a model takes the flux of whatever looks
    like it on some baselines: a source due north of the pointing and the calibrator at it are
    both constant on the east-west baselines, where an absent 20 Jy source 2.3 deg out read as
    2.8 times present. Returns (scale, its noise) per group: 1 all of it, 0 none; the noise
    from the residual's scatter. ``sum_column``: also write the sum of all groups' models there
    (every polarisation alike), sparing a second prediction of them."""
    n = len(groups) + (known_column is not None)
    gram, rhs = np.zeros((n, n)), np.zeros(n)
    power, count = 0.0, 0
    with casa_table(ms_path, readonly=sum_column is None) as tb:
        npol = add_data_column(tb, sum_column) if sum_column else 0
        for start, rows, models in model_chunks(ms_path, tb, groups):
            if sum_column:
                tb.putcol(sum_column, np.repeat(np.sum(models, axis=0)[:, :, None], npol, axis=2),
                          startrow=start, nrow=rows)
            cross = tb.getcol("ANTENNA1", startrow=start, nrow=rows) != tb.getcol("ANTENNA2", startrow=start, nrow=rows)
            good = ~tb.getcol("FLAG", startrow=start, nrow=rows) & cross[:, None, None]
            data = tb.getcol(column, startrow=start, nrow=rows)
            terms = [np.broadcast_to(m[:, :, None], data.shape)[good] for m in models]
            if known_column is not None:
                terms.append(tb.getcol(known_column, startrow=start, nrow=rows)[good])
            d = data[good]
            for i, mi in enumerate(terms):
                rhs[i] += float(np.sum(np.real(d * np.conj(mi))))
                for j in range(i, n):
                    gram[i, j] += float(np.sum(np.real(mi * np.conj(terms[j]))))
            power += float(np.sum(np.abs(d) ** 2))
            count += 2 * d.size
    gram = np.triu(gram) + np.triu(gram, 1).T
    if count <= n or not np.all(np.diag(gram) > 0):
        return [(float("nan"), float("nan"))] * len(groups)
    scale = np.linalg.solve(gram, rhs)
    variance = max(power - 2 * scale @ rhs + scale @ gram @ scale, 0.0) / (count - n)  # per real part
    noise = np.sqrt(variance * np.diag(np.linalg.inv(gram)))
    return [(float(x), float(e)) for x, e in zip(scale[: len(groups)], noise[: len(groups)])]


def held(scale: float, noise: float, min_presence: float, min_significance: float) -> bool:
    """Whether a :func:`presence` (scale, noise) says the data hold the sources: at least
    ``min_presence`` of their model, at ``min_significance`` times its noise or more."""
    return scale >= min_presence and (noise == 0 or scale / noise >= min_significance)


def subtract_sky(ms_path: Path | str, catalogue_sources, column: str = "DATA",
                 config: PeelingConfig = PeelingConfig()) -> tuple[list[PeeledSource], list, dict]:
    """Peel the bright sources of ``ms_path`` (:func:`bright_sources`, :func:`peel`), subtract
    the fainter sky outside the image as predicted (:func:`outside_sky`) from ``column`` and
    record both in the Measurement Set (:func:`write_record`). Returns (peeled, subtracted
    (model, apparent Jy), seconds per step)."""
    t = time.perf_counter()
    bright = bright_sources(ms_path, catalogue_sources, config)
    peeled = peel(ms_path, bright, column, config, catalogue_sources)
    timings = {"peeling": time.perf_counter() - t}
    t = time.perf_counter()
    subtracted = outside_sky(ms_path, catalogue_sources, bright, config)
    subtract_predicted(ms_path, [m for m, _ in subtracted], column)
    timings["outside_subtraction"] = time.perf_counter() - t
    write_record(ms_path, peeled, subtracted)
    return peeled, subtracted, timings


def subtract_predicted(ms_path: Path | str, sources: list[SourceModel], column: str = "DATA") -> None:
    """Subtract the model of ``sources`` (beam, smearing; :func:`sky_model.predict_model`) from
    ``column`` of ``ms_path`` in place, through a scratch column removed afterwards."""
    if not sources:
        return
    try:
        predict_model(ms_path, sources, primary_beam=True, smearing=True, column=SUBTRACT_COLUMN)
        with casa_table(ms_path, readonly=False) as tb:
            for start, n in row_chunks(tb.nrows()):
                tb.putcol(column, tb.getcol(column, startrow=start, nrow=n)
                          - tb.getcol(SUBTRACT_COLUMN, startrow=start, nrow=n), startrow=start, nrow=n)
    finally:
        with casa_table(ms_path, readonly=False) as tb:
            if SUBTRACT_COLUMN in tb.colnames():
                tb.removecols([SUBTRACT_COLUMN])


def peel(ms_path: Path | str, sources: list[SourceModel], column: str = "DATA",
         config: PeelingConfig = PeelingConfig(), catalogue_sources=()) -> list[PeeledSource]:
    """Subtract each of ``sources`` (in order) that the data hold from ``column`` of
    ``ms_path`` in place, with its own gains solved against the sky the data hold:
    :func:`sky_context` of ``catalogue_sources`` (the reference catalogue) and the ``sources``
    not yet subtracted. Whether the data hold a source is judged for all of them at once
    (:func:`presence`, jointly with the rest of that sky). The model columns it writes
    (MODEL_DATA among them) are removed afterwards. Returns what was done, source by source."""
    ms_path = Path(ms_path)
    if not sources:
        return []
    obs = _Observation.of(ms_path)
    context = sky_context(obs, catalogue_sources, sources, config)
    apparent, offsets = obs.apparent_jy(sources), obs.offsets_deg(sources)
    done, gains = [], {}
    try:
        # the model of all the data hold (the candidates the data lack taken out of it), each
        # source leaving it as it leaves the data
        found = presence(ms_path, [[s] for s in sources] + ([context] if context else []), column,
                         sum_column=CONTEXT_COLUMN)[: len(sources)]
        there = [held(scale, noise, config.min_presence, config.min_significance) for scale, noise in found]
        if any(there):
            subtract_predicted(ms_path, [s for s, ok in zip(sources, there) if not ok], CONTEXT_COLUMN)
        for k, (source, (scale, noise)) in enumerate(zip(sources, found)):
            t0 = time.perf_counter()
            significance = scale / noise if noise > 0 else float("inf")
            if not there[k]:
                done.append(PeeledSource(source.name, source.ra_deg, source.dec_deg, float(offsets[k]),
                                         float(apparent[k]), float("nan"), scale, scale, float("nan"), 0.0, False,
                                         significance))
                log.warning("%s (%.2f deg out, %.3g Jy apparent) not peeled: the data hold %.2f of its model at "
                            "%.1f sigma", source.name, offsets[k], apparent[k], scale, significance)
                continue
            predict_model(ms_path, [source])
            before, after, phase_scatter, gains[k] = _solve_and_subtract(ms_path, column, config)
            taken = before - after  # the share of the model subtracted
            others = len(context) + sum(there[k + 1:])
            done.append(PeeledSource(source.name, source.ra_deg, source.dec_deg, float(offsets[k]), float(apparent[k]),
                                     float(apparent[k]) * taken, before, after, phase_scatter,
                                     time.perf_counter() - t0, True, significance, others,
                                     float(source.flux_at(obs.freq_hz)) * taken))
            log.info("peeled %s (%.2f deg out, %.3g Jy apparent, %.3g taken, %d other sources in its model): "
                     "%.3f of it left", source.name, offsets[k], apparent[k], apparent[k] * taken, others, after)
        for _ in range(1, config.cycles if len(gains) > 1 else 1):
            for k, source in enumerate(sources):
                if k not in gains:
                    continue
                t0 = time.perf_counter()
                predict_model(ms_path, [source])
                before, after, phase_scatter, gains[k] = _solve_and_subtract(ms_path, column, config, gains[k])
                taken = before - after
                done[k] = replace(done[k], remaining_after=after, gain_phase_scatter_deg=phase_scatter,
                                  solved_apparent_jy=float(apparent[k]) * taken,
                                  solved_flux_jy=float(source.flux_at(obs.freq_hz)) * taken,
                                  seconds=done[k].seconds + time.perf_counter() - t0,
                                  context_sources=len(context))
    finally:
        with casa_table(ms_path, readonly=False) as tb:
            tb.removecols([c for c in (CONTEXT_COLUMN, "MODEL_DATA") if c in tb.colnames()])
    return done


CONTEXT_COLUMN = "PEEL_CONTEXT_DATA"
"""Scratch column of the model of what the data hold while peeling, removed afterwards."""
SUBTRACT_COLUMN = "SUBTRACT_MODEL_DATA"
"""Scratch column of the model subtracted as predicted, removed afterwards."""


def sky_context(obs: _Observation, catalogue_sources, peeled: list[SourceModel], config: PeelingConfig
                ) -> list[SourceModel]:
    """The reference catalogue's sources above ``context_above_jy`` apparent in ``obs``,
    brightest first, at most ``max_context``, leaving out those within 1 arcmin of a source
    to be ``peeled`` (its own entry). Wherever they lie: a peeled source's gains take up any
    of them the model lacks, in the main lobe as beside the source."""
    models = [SourceModel.from_catalogue(s) for s in catalogue_sources]
    if not models:
        return []
    apparent = obs.apparent_jy(models)
    above = np.flatnonzero(apparent > config.context_above_jy)
    picked = []
    for i in above[np.argsort(-apparent[above])]:
        if not peeled or separation_deg(peeled, models[i].ra_deg, models[i].dec_deg).min() > 1 / 60:
            picked.append(models[i])
            if len(picked) == config.max_context:
                break
    return picked


def restore(image: np.ndarray, header, pb: np.ndarray, peeled: list[dict]) -> list[str]:
    """Put the peeled sources that lie inside ``image`` (Jy/beam, 2-D, in place) back into it,
    each as the restoring beam (``header``'s BMAJ, BMIN, BPA) at its position with a peak of its
    ``solved_flux_jy`` (what peeling took) times the primary beam ``pb`` there: what CLEAN would
    have restored for a constant source of that flux. An A-team source inside the image is put back too, so that
    whether it was peeled never changes what the image shows of it. Returns the names restored."""
    from astropy.wcs import WCS

    from .photometry import RestoringBeam

    wanted = [p for p in peeled if p.get("subtracted", True) and np.isfinite(p.get("solved_flux_jy", np.nan))]
    if not wanted:
        return []
    wcs, beam = WCS(header).celestial, RestoringBeam.from_header(header)
    cell = abs(header["CDELT1"])
    half = int(np.ceil(3 * header["BMAJ"] / cell))  # 3 FWHM: the Gaussian is 2e-11 of its peak there
    done = []
    for p in wanted:
        x, y = (float(v) for v in wcs.world_to_pixel_values(p["ra_deg"], p["dec_deg"]))
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < image.shape[1] and 0 <= yi < image.shape[0]):
            continue
        ys, xs = np.mgrid[max(yi - half, 0) : min(yi + half + 1, image.shape[0]),
                          max(xi - half, 0) : min(xi + half + 1, image.shape[1])]
        image[ys, xs] += p["solved_flux_jy"] * pb[yi, xi] * beam.at(x, y, xs, ys)
        done.append(p["name"])
    return done


def remaining_fraction(ms_path: Path | str, source: SourceModel, column: str = "DATA") -> float:
    """How much of ``source`` ``column`` holds: Re<D, M> / <M, M> over the unflagged
    cross-correlations, M its model (beam, smearing). 1: all of it."""
    return presence(ms_path, [[source]], column)[0][0]


def _solve_and_subtract(ms_path: Path, column: str, config: PeelingConfig, put_back: list | None = None
                        ) -> tuple[float, float, float, list]:
    """Fit CONTEXT_COLUMN (the model of all the data hold) to ``column`` with per-antenna
    gains per solution cell, subtract the gains times MODEL_DATA (one source's model) from
    ``column`` and MODEL_DATA from CONTEXT_COLUMN. ``put_back``: the source was subtracted
    before with these gains (as returned) and has left CONTEXT_COLUMN; it is put back into both
    first (so "before" holds what it put back). Returns (remaining before, remaining after,
    robust gain-phase scatter in deg, the gains: one (antennas, cells) array per solution
    interval)."""
    projections = np.zeros(3)  # Re<D, M> before, after; <M, M>
    phases, solved = [], []
    with casa_table(ms_path, readonly=False) as tb:
        t = tb.getcol("TIME")
        breaks = np.flatnonzero(np.diff(t)) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(t)]])
        if np.any(np.diff(t[starts]) <= 0):
            raise ValueError(f"{ms_path}: rows are not in time order; peeling needs time-major rows")
        step = max(1, config.solution_integrations)
        for interval, i in enumerate(range(0, len(starts), step)):
            first, last = int(starts[i]), int(ends[min(i + step, len(starts)) - 1])
            n = last - first
            model = tb.getcol("MODEL_DATA", startrow=first, nrow=n)
            fitted = tb.getcol(CONTEXT_COLUMN, startrow=first, nrow=n)
            a1 = tb.getcol("ANTENNA1", startrow=first, nrow=n)
            a2 = tb.getcol("ANTENNA2", startrow=first, nrow=n)
            data = tb.getcol(column, startrow=first, nrow=n)  # (rows, chan, pol)
            # one solution per run of channels (band) and polarisation, all solved at once
            width = -(-data.shape[1] // max(1, config.solution_bands))
            band_starts = np.arange(0, data.shape[1], width)
            # gains (antennas, bands x pols) as (antennas, bands, pols), taken per channel by its band
            cell_shape, band_of_channel = (len(band_starts), data.shape[2]), np.arange(data.shape[1]) // width
            if put_back is None:
                tb.putcol(CONTEXT_COLUMN, fitted - model, startrow=first, nrow=n)
            else:  # the column stays without the source; the fit has it
                g = put_back[interval].reshape(-1, *cell_shape)[:, band_of_channel]
                data += g[a1] * np.conj(g[a2]) * model
                fitted = fitted + model
            weight = ~tb.getcol("FLAG", startrow=first, nrow=n) & (a1 != a2)[:, None, None]
            projections[0] += np.sum(np.real(data * np.conj(model))[weight])
            projections[2] += np.sum(np.abs(model[weight]) ** 2)
            n_ant = int(max(a1.max(), a2.max())) + 1
            sums = [np.add.reduceat(x, band_starts, axis=1) for x in
                    (weight * data * np.conj(fitted), weight * np.abs(fitted) ** 2, weight.astype(float))]
            k = sums[0].shape[1] * sums[0].shape[2]
            cells = (stefcal_sums(*(x.reshape(n, k) for x in sums[:2]), a1, a2, n_ant, config.iterations)
                     if config.solve_gains else np.ones((n_ant, k), dtype=np.complex128))
            solved.append(cells)
            g = cells.reshape(-1, *cell_shape)[:, band_of_channel]
            data -= g[a1] * np.conj(g[a2]) * model
            # each cell's gains' phases about their mean over the antennas with data there
            has_data = sums[2].reshape(n, k) > 0
            used = np.zeros((n_ant, k), bool)
            np.logical_or.at(used, a1, has_data)
            np.logical_or.at(used, a2, has_data)
            for c in range(k):
                cell = cells[used[:, c], c]
                if len(cell):
                    mean = np.mean(cell)
                    phases.append(np.angle(cell * np.conj(mean / (abs(mean) or 1.0))))
            projections[1] += np.sum(np.real(data * np.conj(model))[weight])
            tb.putcol(column, data, startrow=first, nrow=n)
    total = projections[2] or 1.0
    ph = np.concatenate(phases) if phases else np.zeros(1)
    scatter = float(np.degrees(1.4826 * np.median(np.abs(ph - np.median(ph)))))
    return float(projections[0] / total), float(projections[1] / total), scatter, solved


def stefcal(data: np.ndarray, model: np.ndarray, weight: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
            n_ant: int, iterations: int = 60, tolerance: float = 1e-6) -> np.ndarray:
    """Antenna gains g (n_ant complex) minimising sum w |D_ij - g_i conj(g_j) M_ij|^2 over rows
    (baselines) and channels (axis 1); antennas without data get 0. See :func:`stefcal_sums`."""
    w = weight.astype(float)
    return stefcal_sums(np.sum(w * data * np.conj(model), axis=1)[:, None],
                        np.sum(w * np.abs(model) ** 2, axis=1)[:, None], ant1, ant2, n_ant, iterations, tolerance)[:, 0]


def stefcal_sums(p: np.ndarray, q: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                 iterations: int = 60, tolerance: float = 1e-6) -> np.ndarray:
    """StEFCal (Salvini & Wijnholds 2014) for K independent problems at once (a band's
    channels, a polarisation): ``p`` = sum w D conj(M) and ``q`` = sum w |M|^2 per row (baseline)
    and problem, shape (rows, K). Each antenna's gain in turn is the least-squares answer given
    the others', every second step averaged with the last, until every problem has converged.
    Returns (n_ant, K) complex gains; an antenna without data gets 0."""
    rows, k = p.shape
    cells = np.arange(k)
    i1, i2 = (ant1[:, None] * k + cells).ravel(), (ant2[:, None] * k + cells).ravel()

    def per_antenna(index, values):
        values = values.ravel()
        total = np.bincount(index, values.real, n_ant * k)
        if np.iscomplexobj(values):
            total = total + 1j * np.bincount(index, values.imag, n_ant * k)
        return total.reshape(n_ant, k)

    g = np.ones((n_ant, k), dtype=np.complex128)
    for it in range(iterations):
        num = per_antenna(i1, g[ant2] * p) + per_antenna(i2, g[ant1] * np.conj(p))
        den = per_antenna(i1, np.abs(g[ant2]) ** 2 * q) + per_antenna(i2, np.abs(g[ant1]) ** 2 * q)
        new = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        if it % 2:
            new = 0.5 * (new + g)
        change = np.linalg.norm(new - g, axis=0) / np.maximum(np.linalg.norm(new, axis=0), 1e-30)
        g = new
        if np.all(change < tolerance):
            break
    return g


RECORD = "dsa110-peeled.json"
"""What peeling subtracted, kept inside the peeled Measurement Set (a list of
:meth:`PeeledSource.as_dict`)."""
SUBTRACTED_RECORD = "dsa110-subtracted.json"
"""The sources outside the image subtracted as predicted (name, position in deg, apparent Jy)."""


def write_record(ms_path: Path | str, peeled: list[PeeledSource], subtracted: list[tuple[SourceModel, float]] = ()
                 ) -> None:
    (Path(ms_path) / RECORD).write_text(json.dumps([p.as_dict() for p in peeled], indent=1))
    (Path(ms_path) / SUBTRACTED_RECORD).write_text(json.dumps(
        [{"name": m.name, "ra_deg": m.ra_deg, "dec_deg": m.dec_deg, "apparent_jy": round(a, 5)} for m, a in subtracted]))


def read_record(ms_path: Path | str) -> list[dict]:
    """What was peeled from ``ms_path`` (empty when nothing was, or before peeling existed)."""
    path = Path(ms_path) / RECORD
    return json.loads(path.read_text()) if path.exists() else []


def read_subtracted(ms_path: Path | str) -> list[dict]:
    """The sources outside the image subtracted as predicted from ``ms_path`` (empty: none)."""
    path = Path(ms_path) / SUBTRACTED_RECORD
    return json.loads(path.read_text()) if path.exists() else []


def _times(ms_path: Path) -> np.ndarray:
    with casa_table(ms_path) as tb:
        return np.unique(tb.getcol("TIME"))


def _above_horizon(source, when) -> bool:
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    from ..geometry import default_site

    coord = SkyCoord(source.ra_deg, source.dec_deg, unit="deg")
    return bool(coord.transform_to(AltAz(obstime=Time(when), location=default_site())).alt.deg > 0)
