"""A DSA-110 correlator simulator: writes observations exactly as the real file writer does.

File layout (old UVH5 header, see ``docs/instrument.md``): 16 files
``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``, first written as ``..._incomplete.hdf5`` and renamed; all
117 antennas listed, names "1".."117", numbers 0..116; the active ones correlated with
autocorrelations, in correlator-input order (so some baselines have ant1 > ant2); time-major
blts; 48 channels per file in descending frequency, sb00 highest, negative channel width;
XX/YY; complex64 visibilities of shape (Nblts, 1, Nfreqs, 2); each integration fringe-stopped
to the meridian at the pointing declination, with time-invariant float32 meridian uvw.

The sky is a list of point sources seen through the Airy primary beam of a 4.65 m dish
pointed at (hour angle 0, pointing declination); directions come from astropy's rigorous
transforms (:mod:`dsa_assets.geometry`), so every source images at its true ICRS position.
Each visibility is the average over its 12.88 s integration and its 244 kHz channel: within
an integration the correlator tracks the meridian's ICRS position at the integration's middle,
so a source away from it drifts in delay as the sky turns (its offset's direction changes),
which multiplies it by ``sinc(nu dtau)``, and it spans the channel, ``sinc(dnu tau)``: the time
and bandwidth smearing real data have, nothing at the phase centre, most for the far
sidelobe sources. Thermal noise follows the SEFD; gains and bandpasses corrupt
``V_ij -> g_i conj(g_j) V_ij``.
"""

from __future__ import annotations

import os
import time as _time
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import astropy.units as u
import h5py
import numpy as np
from astropy.time import Time

from .. import catalogue, geometry, naming
from .. import constants as C
from .predict import point_source_visibilities
from .sky import (
    A_TEAM,
    REFERENCE_FREQ_HZ,
    SKY_CATALOGUE,
    Corruptions,
    PointSource,
    Truth,
    Variation,
    apply_variations,
    beam_envelope,
    realistic_strip,
    sky_strip,
)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate; defaults are the real instrument at full scale."""

    n_antennas: int = 96
    """Active (correlating) antennas, chosen evenly across the array's active stations."""
    n_integrations: int = C.N_INTEGRATIONS
    """Integrations of 12.88 s per observation."""
    channels_per_subband: int = C.CHANNELS_PER_SUBBAND
    """Channels kept per subband (a divisor of 48): every (48 / n)-th grid channel."""
    subbands: tuple[int, ...] = tuple(range(C.N_SUBBANDS))
    """Subbands written; the others are missing, as when a correlator node drops out."""
    sky: Literal["uniform", "realistic"] = "uniform"
    """"uniform": ``n_sources`` per beam with log-uniform fluxes, none beyond ``SKY_RADIUS_DEG``
    (an idealised sky for tests); "realistic": the real sky's source counts down to
    ``apparent_floor_jy`` of response anywhere in the beam, sidelobes included
    (:func:`sky.realistic_strip`). Either is a fixed random strip around the pointing
    declination, seeded by ``seed``. Ignored when ``sources`` is given."""
    n_sources: float = 8
    """Uniform sky: mean number of sources within 1.2 deg of the beam centre."""
    apparent_floor_jy: float = 1e-3
    """Realistic sky: sources whose response anywhere in the beam stays below this (Jy) are
    left out, of the sky and of an observation."""
    a_team: bool = False
    """Add Cas A, Cyg A, Tau A and Vir A (:data:`sky.A_TEAM`) whenever they are above the horizon."""
    smearing: bool = True
    """Average each visibility over its integration and channel (time and bandwidth smearing);
    off: evaluated at the integration's midpoint and the channel's centre."""
    sidelobe_errors: float = 0.0
    """Each antenna sees each source through its own dish: a complex factor 1 + e (per antenna
    and source, fixed for an observation) with rms |e| = this x (1 - beam response), so the
    main lobe is as modelled and the sidelobes differ from dish to dish by this fraction (real
    dishes' sidelobes differ with their surfaces, feeds and blockage). What direction-dependent
    calibration (peeling) is for; 0: every dish the ideal Airy beam."""
    sources: tuple[PointSource, ...] | None = None
    variations: tuple[Variation, ...] = ()
    """Light curves imposed on named sky sources (flares, steps); the truth file records the
    flux densities at each observation."""
    flux_range_jy: tuple[float, float] = (0.2, 3.0)
    """Flux densities of the random sky (log-uniform, Jy at 1.4 GHz)."""
    calibrator: str | None = None
    """A VLA calibrator (``3C286``, ``1331+305``) added to the sky at its catalogue position and
    flux density (Perley-Butler 2017 for primary calibrators); see :func:`calibrator_field`."""
    pointing_dec_rad: float = C.DEFAULT_POINTING_DEC_RAD
    noise: bool = True
    sefd_jy: float = C.SEFD_JY
    gains: bool = True
    """Apply random per-antenna complex gains and bandpasses."""
    gain_amp_scatter: float = 0.1
    seed: int = 1
    """Seeds the sky and noise of an observation (``simulate_observations`` adds its index)."""
    gain_seed: int | None = None
    """Seeds the gains and bandpasses (default ``seed``): the same for every observation of a
    config, as an instrument's are between calibrations, so solutions transfer."""
    timestamp_jitter: bool = True
    """File-name stamps jitter like real ones: mostly 1-2 s, sometimes ~20 s, rarely ~80 s."""
    chunk_rows: int | None = None
    """HDF5 chunk length in blts (default: one integration's baselines)."""

    def channel_indices(self) -> np.ndarray:
        if C.CHANNELS_PER_SUBBAND % self.channels_per_subband:
            raise ValueError(f"channels_per_subband must divide 48, got {self.channels_per_subband}")
        return np.arange(0, C.CHANNELS_PER_SUBBAND, C.CHANNELS_PER_SUBBAND // self.channels_per_subband)


SKY_RADIUS_DEG = 2.0
"""Uniform sky: sources further than this from the beam centre (the beam's response there
< ~25%) are left out of an observation."""

REALISTIC_MAX_OFFSET_DEG = 30.0
"""Realistic sky: declinations this far from the pointing at most (the sidelobes' envelope
there is 7e-5: a 15 Jy source puts the 1 mJy floor into the data; the A-team are added apart)."""

SCALED_DOWN = SimConfig(n_antennas=20, n_integrations=4, channels_per_subband=4, n_sources=5)
"""A group that simulates and converts in seconds, for tests and the demo."""


def active_stations(n: int) -> np.ndarray:
    """0-based antenna numbers of ``n`` active stations spread evenly over the array; more
    than the 96 stations active in 2026 (up to all 117) draws on the whole array."""
    active = np.array([s - 1 for s in range(1, C.N_STATIONS + 1) if s not in C.INACTIVE_STATIONS])
    if n > len(active):
        active = np.arange(C.N_STATIONS)
    if not 2 <= n <= len(active):
        raise ValueError(f"n_antennas must be in 2..{C.N_STATIONS}, got {n}")
    return active[np.round(np.linspace(0, len(active) - 1, n)).astype(int)]


def correlator_baselines(antennas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ant1, ant2) of all pairs with autos, in correlator-input order.

    The correlator's inputs are not sorted by antenna number (here: the last quarter of
    the antennas is wired first), so pairs spanning the two blocks have ant1 > ant2.
    """
    k = len(antennas) // 4
    inputs = np.concatenate([antennas[len(antennas) - k :], antennas[: len(antennas) - k]])
    i, j = np.triu_indices(len(inputs))
    return inputs[i], inputs[j]


def _file_time_offsets(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds each node opens its file after the first: the real spread of a group."""
    offsets = rng.uniform(0.0, 2.0, n)
    kind = rng.uniform()
    if kind < 0.02:
        offsets[rng.integers(n)] += rng.uniform(60.0, 80.0)
    elif kind < 0.12:
        late = rng.choice(n, size=rng.integers(1, 4), replace=False)
        offsets[late] += rng.uniform(13.0, 22.0, len(late))
    offsets -= offsets.min()
    return offsets


@dataclass
class SimulatedGroup:
    """What one simulated observation produced."""

    stamp: str
    files: list[Path]
    truth_path: Path
    truth: Truth
    data_start: datetime
    meta: dict = field(default_factory=dict)


class CorrelatorSimulator:
    """Simulates observations and writes them as the correlator does."""

    def __init__(self, config: SimConfig = SimConfig()):
        self.config = config
        self.location = geometry.default_site()
        self.site_ecef = np.array(
            [self.location.x.to_value(u.m), self.location.y.to_value(u.m), self.location.z.to_value(u.m)]
        )
        self.ecef = geometry.station_positions_ecef()
        self.antennas = active_stations(config.n_antennas)
        self.ant1, self.ant2 = correlator_baselines(self.antennas)
        self.channels = config.channel_indices()
        self._sky: list[PointSource] | None = None

    # -- public API ------------------------------------------------------------------
    def write_observation(
        self,
        output_dir: Path | str,
        data_start: datetime,
        *,
        missing: tuple[int, ...] = (),
        interrupted: tuple[int, ...] = (),
        seed: int | None = None,
    ) -> SimulatedGroup:
        """Simulate one observation starting at ``data_start`` (UTC) into ``output_dir``.

        ``missing`` subbands are not written (besides those absent from the config);
        ``interrupted`` ones are left as a truncated ``_incomplete`` file, as after a crash.
        Returns the complete files written and the truth.
        """
        cfg = self.config
        rng = np.random.default_rng(cfg.seed if seed is None else seed)
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        times = Time(data_start) + (np.arange(cfg.n_integrations) + 0.5) * C.INTEGRATION_TIME_S * u.s
        s0 = geometry.meridian_unit_vectors(cfg.pointing_dec_rad, times, self.location)
        mid = geometry.meridian_icrs(cfg.pointing_dec_rad, times[len(times) // 2], self.location)
        # the calibrator is in every observation, however far (the field was chosen by it); a
        # realistic sky already holds it among the VLA calibrators
        calibrator = [calibrator_source(cfg.calibrator)] if cfg.calibrator else []
        if cfg.sources is not None:
            sources = list(cfg.sources)
        else:
            sky = self.sky()
            if cfg.sky == "uniform":
                sources = catalogue.within(sky, mid.ra.deg, mid.dec.deg, SKY_RADIUS_DEG)
            else:
                sources = self._seen(sky, times)
            if not (out / SKY_CATALOGUE).exists():  # every source of the sky, the calibrator's too
                catalogue.write(out / SKY_CATALOGUE, _without(sky, calibrator) + (list(A_TEAM) if cfg.a_team else [])
                                + calibrator)
        if cfg.a_team:
            sources += self._seen(list(A_TEAM), times)
        sources = _without(sources, calibrator) + calibrator
        if cfg.variations:
            sources = apply_variations(sources, cfg.variations, times[len(times) // 2].unix)
        all_freqs = np.concatenate([C.subband_frequencies_hz(sb, self.channels) for sb in range(C.N_SUBBANDS)])
        gain_rng = np.random.default_rng(cfg.seed if cfg.gain_seed is None else cfg.gain_seed)
        corruptions = (
            Corruptions.random(C.N_STATIONS, all_freqs, gain_rng, cfg.gain_amp_scatter)
            if cfg.gains
            else Corruptions.identity(C.N_STATIONS)
        )
        offsets = _file_time_offsets(rng, C.N_SUBBANDS) if cfg.timestamp_jitter else np.zeros(C.N_SUBBANDS)
        stamps = [naming.format_time(data_start + timedelta(seconds=float(o))) for o in offsets]
        group_stamp = min(stamps)

        sources = [src for src in sources if src.flux_jy > 0]
        sky_vis = self._sky_visibilities(sources, times, s0)
        n_ch = len(self.channels)
        written = []
        skip = set(missing) | (set(range(C.N_SUBBANDS)) - set(cfg.subbands))
        for sb in range(C.N_SUBBANDS):
            if sb in skip:
                continue
            final = out / naming.subband_file_name(stamps[sb], sb)
            vis = self._corrupt(sb, sky_vis[:, sb * n_ch:(sb + 1) * n_ch], corruptions, rng)
            self._write_file(final, sb, times, vis, truncate=sb in interrupted)
            if sb not in interrupted:
                written.append(final)
        del sky_vis

        truth = Truth(
            group_stamp=group_stamp,
            sources=sources,
            pointing_dec_rad=cfg.pointing_dec_rad,
            sefd_jy=cfg.sefd_jy,
            noise=cfg.noise,
            antenna_numbers=[int(a) for a in self.antennas],
            gains=[[[g.real, g.imag] for g in ant] for ant in corruptions.gains],
            bandpass=Truth.bandpass_parameters(corruptions),
            missing_subbands=sorted(skip | set(interrupted)),
        )
        truth_path = out / naming.truth_file_name(group_stamp)
        truth.write(truth_path)
        return SimulatedGroup(group_stamp, written, truth_path, truth, data_start)

    def sky(self) -> list[PointSource]:
        """This configuration's fixed sky (the strip around its pointing declination)."""
        cfg = self.config
        if self._sky is None:
            dec = np.degrees(cfg.pointing_dec_rad)
            self._sky = (sky_strip(dec, cfg.seed, cfg.n_sources, flux_range_jy=cfg.flux_range_jy) if cfg.sky == "uniform"
                         else realistic_strip(dec, cfg.seed, cfg.apparent_floor_jy, max_offset_deg=REALISTIC_MAX_OFFSET_DEG))
        return self._sky

    def _seen(self, sources: list[PointSource], times: Time) -> list[PointSource]:
        """The ``sources`` that put more than the apparent floor into the data at some time of
        the observation (beam envelope at the closest of its start, middle and end) and are
        above the horizon then."""
        if not sources:
            return []
        ra = np.array([src.ra_deg for src in sources])
        dec = np.array([src.dec_deg for src in sources])
        flux = np.array([src.flux_jy for src in sources])
        closest = np.full(len(sources), 180.0)
        for t in (times[0], times[len(times) // 2], times[-1]):
            centre = geometry.meridian_icrs(self.config.pointing_dec_rad, t, self.location)
            closest = np.minimum(closest, catalogue.angular_distance_deg(ra, dec, centre.ra.deg, centre.dec.deg))
        keep = (flux * beam_envelope(closest) >= self.config.apparent_floor_jy) & (closest < 90.0)
        if not keep.any():
            return []
        picked = [src for src, k in zip(sources, keep) if k]
        up = self.site_ecef / np.linalg.norm(self.site_ecef)
        s = geometry.icrs_unit_vectors(np.radians(ra[keep]), np.radians(dec[keep]), times[[len(times) // 2]], self.location)
        return [src for src, above in zip(picked, s[:, 0] @ up > 0) if above]

    # -- physics -----------------------------------------------------------------------
    def _sky_visibilities(self, sources: list[PointSource], times: Time, s0: np.ndarray) -> np.ndarray:
        """The sky's visibilities over the whole band, rows in file order (Nt x Nbls), columns
        the kept channels of sb00, sb01, ... in file order (descending frequency), complex64:
        each source's apparent flux (beam x spectrum) times its fringe, averaged over the
        integration and the channel (:mod:`dsa_assets.sim.predict`)."""
        cfg = self.config
        n_t = len(times)
        n_bls = len(self.ant1)
        freqs = np.concatenate([C.subband_frequencies_hz(sb, self.channels) for sb in range(C.N_SUBBANDS)])
        if not sources:
            return np.zeros((n_t * n_bls, len(freqs)), dtype=np.complex64)
        # directions at each integration's middle and edges (ITRF axes). Within an integration
        # the correlator tracks its phase centre, the ICRS position on the meridian at the
        # integration's middle: a source's delay drifts by the change of its offset from that
        # centre, nothing for a source on it
        half = 0.5 * C.INTEGRATION_TIME_S * u.s
        ra = np.radians([src.ra_deg for src in sources])
        dec = np.radians([src.dec_deg for src in sources])
        edges = Time(np.concatenate([times.jd, (times - half).jd, (times + half).jd]), format="jd", scale=times.scale)
        s = geometry.icrs_unit_vectors(ra, dec, edges, self.location)
        centres = geometry.meridian_icrs(cfg.pointing_dec_rad, times, self.location)
        c = geometry.icrs_unit_vectors(centres.ra.rad, centres.dec.rad, edges, self.location)  # (Nt, 3 Nt, 3)
        k = np.arange(n_t)
        centre_drift = c[k, 2 * n_t + k] - c[k, n_t + k]  # (Nt, 3)
        mid, drift = s[:, :n_t], s[:, 2 * n_t:] - s[:, n_t:2 * n_t] - centre_drift[None]
        cos = np.einsum("ktx,tx->kt", mid, s0)
        flux = np.array([src.flux_jy for src in sources])
        index = np.array([src.spectral_index for src in sources])
        spectrum = flux[:, None] * (freqs[None, :] / REFERENCE_FREQ_HZ) ** index[:, None]  # (Nsrc, Nch)

        def amplitude(k0: int, k1: int) -> np.ndarray:
            beam = geometry.airy_power_beam(cos[k0:k1, :, None], freqs[None, None, :])
            return beam * spectrum[k0:k1, None, :]

        baselines = geometry.baseline_vectors(self.ecef, self.ant1, self.ant2) / geometry.SPEED_OF_LIGHT_M_S
        factors = None
        if cfg.sidelobe_errors:
            # seeded by the source's name: a source's dishes do not change with the rest of the sky
            noise = np.array([np.random.default_rng([cfg.seed, 17, zlib.crc32(src.name.encode())])
                              .standard_normal((2, C.N_STATIONS)) for src in sources])
            beam = geometry.airy_power_beam(cos[:, n_t // 2], float(np.mean(freqs)))
            scale = cfg.sidelobe_errors * (1.0 - beam)[:, None] / np.sqrt(2)
            factors = 1.0 + scale * (noise[:, 0] + 1j * noise[:, 1])
        return point_source_visibilities(mid - s0[None], drift, baselines, amplitude, freqs, C.CHANNEL_WIDTH_HZ,
                                         cfg.smearing, factors, self.ant1, self.ant2)

    def _corrupt(self, sb: int, sky_vis: np.ndarray, corruptions: Corruptions, rng) -> np.ndarray:
        """File-order visibilities of one subband, shape (Nblts, Nfreqs, 2), complex128: the
        sky's plus thermal noise and the autocorrelations' system power, times the gains."""
        cfg = self.config
        freqs = C.subband_frequencies_hz(sb, self.channels)
        n_t = cfg.n_integrations
        vis = np.repeat(sky_vis[:, :, None].astype(np.complex128), 2, axis=2)
        autos = np.tile(self.ant1 == self.ant2, n_t)
        if cfg.noise:
            sigma = cfg.sefd_jy / np.sqrt(2 * C.CHANNEL_WIDTH_HZ * C.INTEGRATION_TIME_S)
            vis += sigma * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
            vis[autos] = vis[autos].real  # autocorrelations are real powers
        vis[autos] += cfg.sefd_jy
        a1 = np.tile(self.ant1, n_t)
        a2 = np.tile(self.ant2, n_t)
        total = corruptions.total(freqs)  # (Nants, Nf, 2)
        return vis * total[a1] * np.conj(total[a2])

    # -- file layout -------------------------------------------------------------------
    def _meridian_uvw(self) -> np.ndarray:
        """UVH5 uvw (metres, float32) of each baseline for (HA 0, pointing dec): time-invariant."""
        lon = self.location.lon.rad
        dec = self.config.pointing_dec_rad
        b = geometry.baseline_vectors(self.ecef, self.ant1, self.ant2)
        x = b[:, 0] * np.cos(lon) + b[:, 1] * np.sin(lon)
        y = -b[:, 0] * np.sin(lon) + b[:, 1] * np.cos(lon)
        z = b[:, 2]
        uvw = np.stack([y, -x * np.sin(dec) + z * np.cos(dec), x * np.cos(dec) + z * np.sin(dec)], axis=-1)
        return np.tile(uvw, (self.config.n_integrations, 1)).astype(np.float32)

    def _write_file(self, final: Path, sb: int, times: Time, vis: np.ndarray, truncate: bool) -> None:
        cfg = self.config
        n_t = cfg.n_integrations
        n_bls = len(self.ant1)
        n_blts = n_t * n_bls
        freqs = C.subband_frequencies_hz(sb, self.channels)
        tmp = final.with_name(naming.incomplete_name(final.name))
        chunk = cfg.chunk_rows or n_bls
        with h5py.File(tmp, "w") as f:
            h = f.create_group("Header")
            h["telescope_name"] = np.bytes_(C.TELESCOPE_NAME_FILES)
            h["instrument"] = np.bytes_(C.INSTRUMENT_NAME)
            h["object_name"] = np.bytes_("search")
            h["phase_type"] = np.bytes_("drift")
            h["latitude"] = C.OVRO_MMA_LATITUDE_DEG
            h["longitude"] = C.OVRO_MMA_LONGITUDE_DEG
            h["altitude"] = C.OVRO_MMA_ALTITUDE_M
            h["Nants_data"] = len(self.antennas)
            h["Nants_telescope"] = C.N_STATIONS
            h["antenna_names"] = np.array([str(i + 1).encode() for i in range(C.N_STATIONS)])
            h["antenna_numbers"] = np.arange(C.N_STATIONS)
            h["antenna_positions"] = self.ecef - self.site_ecef
            h["antenna_diameters"] = np.full(C.N_STATIONS, C.DISH_DIAMETER_M)
            h["ant_1_array"] = np.tile(self.ant1, n_t)
            h["ant_2_array"] = np.tile(self.ant2, n_t)
            h["Nbls"] = n_bls
            h["Nblts"] = n_blts
            h["Ntimes"] = n_t
            h["Nfreqs"] = len(freqs)
            h["Npols"] = 2
            h["Nspws"] = 1
            h["spw_array"] = np.array([1])
            h["freq_array"] = freqs[None, :]
            h["channel_width"] = -C.CHANNEL_WIDTH_HZ
            h["polarization_array"] = np.array(C.POLARIZATIONS)
            h["time_array"] = np.repeat(times.jd, n_bls)
            h["integration_time"] = np.full(n_blts, C.INTEGRATION_TIME_S)
            h["uvw_array"] = self._meridian_uvw()
            h["history"] = np.bytes_("Written by the dsa110 correlator simulator.")
            ek = h.create_group("extra_keywords")
            ek["phase_center_dec"] = cfg.pointing_dec_rad
            ek["ha_phase_center"] = 0.0
            ek["phase_center_epoch"] = np.bytes_("HADEC")
            ek["applied_delays_ns"] = np.bytes_(" ".join(["0"] * (2 * C.N_STATIONS)))
            d = f.create_group("Data")
            chunks = (min(chunk, n_blts), 1, len(freqs), 2)
            d.create_dataset("visdata", data=vis[:, None].astype(np.complex64), chunks=chunks)
            d.create_dataset("flags", data=np.zeros((n_blts, 1, len(freqs), 2), bool), chunks=chunks)
            nsamples = np.full((n_blts, 1, len(freqs), 2), C.INTEGRATION_TIME_S / C.SUBINTEGRATION_S, np.float32)
            d.create_dataset("nsamples", data=nsamples, chunks=chunks)
        if truncate:
            # a writer that died mid-file: the _incomplete name stays, the tail is missing
            with open(tmp, "r+b") as fh:
                fh.truncate(os.path.getsize(tmp) // 2)
            return
        os.replace(tmp, final)


def simulate_observations(
    output_dir: Path | str,
    start: datetime,
    n_observations: int,
    config: SimConfig = SCALED_DOWN,
    cadence_s: float = C.OBSERVATION_CADENCE_S,
    realtime_factor: float | None = None,
) -> list[SimulatedGroup]:
    """Write ``n_observations`` consecutive observations ``cadence_s`` apart from ``start``.

    With ``realtime_factor`` (e.g. 10 for ten times real time) the writes are paced like the
    correlator's; otherwise they are written as fast as possible.
    """
    sim = CorrelatorSimulator(config)
    groups = []
    t0 = _time.monotonic()
    for i in range(n_observations):
        if realtime_factor:
            wait = t0 + i * cadence_s / realtime_factor - _time.monotonic()
            if wait > 0:
                _time.sleep(wait)
        data_start = start + timedelta(seconds=i * cadence_s)
        groups.append(sim.write_observation(output_dir, data_start, seed=config.seed + i))
    return groups


def _without(sources: list[PointSource], these: list[PointSource]) -> list[PointSource]:
    """``sources`` but those named as one of ``these``."""
    names = {s.name for s in these}
    return [s for s in sources if s.name not in names]


def calibrator_source(name: str) -> PointSource:
    """The catalogue calibrator ``name`` as a point source of the simulated sky."""
    from ..calibrators import by_name

    cal = by_name(name)
    return PointSource(cal.name, cal.ra_deg, cal.dec_deg, cal.flux_jy, cal.spectral_index)


def calibrator_field(config: SimConfig, calibrator: str, near: datetime,
                     transit_observation: int = 0, cadence_s: float = C.OBSERVATION_CADENCE_S
                     ) -> tuple[SimConfig, datetime]:
    """(config, start) for observations from about ``near`` on, with the array pointed at the
    declination of ``calibrator`` and the calibrator transiting in the middle of observation
    number ``transit_observation`` (0-based): the layout of a DSA-110 calibrator pass."""
    from ..calibrators import by_name, transit_start

    cal = by_name(calibrator)
    duration = config.n_integrations * C.INTEGRATION_TIME_S
    dec = geometry.apparent_dec_rad(cal.ra_deg, cal.dec_deg, Time(near), geometry.default_site())
    start = transit_start(cal, near, dec, duration) - timedelta(seconds=transit_observation * cadence_s)
    return replace(config, calibrator=calibrator, pointing_dec_rad=dec), start


def default_start(now: datetime | None = None) -> datetime:
    """A recent start time, rounded to the second (UTC), for the embedded demo."""
    now = now or datetime.now(UTC)
    return (now - timedelta(minutes=30)).replace(microsecond=0)


__all__ = [
    "SCALED_DOWN",
    "CorrelatorSimulator",
    "SimConfig",
    "SimulatedGroup",
    "calibrator_field",
    "default_start",
    "simulate_observations",
]
