"""Calibrator sky models: point-source components, the model of a calibrator transit (the
calibrator and the catalogue sources near it), and MODEL_DATA predicted from them.

:func:`predict_model` writes MODEL_DATA = sum_k S_k(nu) A_k(t, nu) exp(+2 pi i (u l + v m +
w (n - 1)) nu / c) with the MS's UVW and the FIELD's PHASE_DIR (CASA's convention, see
``docs/conventions.md``). A_k is the primary-beam power response at the source: an Airy pattern
of the ANTENNA table's dish diameter centred on the POINTING direction at each time, so a
calibrator drifting through a transit array's fixed beam is modelled as it is observed.

With ``smearing`` (default), each model visibility is also averaged over its integration and
channel as the correlator averaged the data: times sinc(nu dtau) sinc(dnu tau), tau the
source's delay relative to the centre the correlator tracked during the integration and dtau
its change across it (from the rate of the baseline's UVW). DSA-110's correlator tracks the
meridian at the pointing declination at each integration's middle, which is the POINTING
direction then; for a tracking array (no POINTING rows) it is the field centre. Sidelobe
sources (the A-team) lose tens of percent on the long baselines this way, in the data and in
the model alike. The sum over sources is the simulator's compiled one
(:mod:`dsa_assets.stages.point_sources`): its geometry (delays, their drift, the beam) is taken
here from the Measurement Set. Any Measurement Set with one spectral window and J2000/ICRS
field directions will do. Plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import fsutil
from ..geometry import SPEED_OF_LIGHT_M_S, airy_power_beam
from .ms_inspect import casa_table, channel_frequencies, dish_diameter_m, pointing_directions, radec_unit, row_chunks
from .point_sources import add_point_sources


@dataclass(frozen=True)
class SourceModel:
    """One component of a calibrator model: ICRS position (deg), flux density (Jy) at
    ``ref_freq_hz`` and spectral index (S ~ nu^index)."""

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    ref_freq_hz: float = 1.4e9
    spectral_index: float = 0.0

    def flux_at(self, freq_hz) -> np.ndarray:
        return self.flux_jy * (np.asarray(freq_hz, dtype=float) / self.ref_freq_hz) ** self.spectral_index

    @classmethod
    def from_catalogue(cls, source) -> SourceModel:
        """From a :class:`dsa_assets.catalogue.CatalogueSource` (flux at 1.4 GHz)."""
        return cls(source.name, source.ra_deg, source.dec_deg, source.flux_jy, 1.4e9, source.spectral_index)

    @classmethod
    def from_calibrator(cls, cal) -> SourceModel:
        """From a :class:`dsa_assets.calibrators.Calibrator`."""
        from ..calibrators import REFERENCE_FREQ_HZ

        return cls(cal.label, cal.ra_deg, cal.dec_deg, cal.flux_jy, REFERENCE_FREQ_HZ, cal.spectral_index)


def calibrator_model(calibrator: SourceModel, field_sources=(), centre_ra_deg: float = 0.0,
                     centre_dec_deg: float = 0.0, radius_deg: float = 2.0, min_flux_jy: float = 0.0,
                     ) -> list[SourceModel]:
    """The calibrator plus the catalogue's ``field_sources`` (:mod:`dsa_assets.catalogue`) within
    ``radius_deg`` of the beam centre and above ``min_flux_jy``; catalogue entries within 1 arcmin
    of the calibrator are the calibrator itself and are dropped. Flux the model lacks biases the
    gain amplitudes by about its fraction of the calibrator's apparent flux."""
    from .. import catalogue

    near = catalogue.within(list(field_sources), centre_ra_deg, centre_dec_deg, radius_deg)
    others = [s for s, d in zip(near, catalogue.separation_deg(near, calibrator.ra_deg, calibrator.dec_deg))
              if d > 1 / 60 and s.flux_jy >= min_flux_jy]
    return [calibrator] + [SourceModel.from_catalogue(s) for s in others]


def predict_model(ms: Path | str, sources: list[SourceModel], primary_beam: bool = True, smearing: bool = True,
                  column: str = "MODEL_DATA") -> None:
    """Write ``column`` (MODEL_DATA; created if absent) of ``ms`` for ``sources`` (see module docstring).

    With ``primary_beam`` off, the flux densities are taken as apparent (already attenuated);
    with ``smearing`` off, the model is the fringe at each integration's middle and each
    channel's centre.
    """
    with casa_table(ms, readonly=False) as tb:
        npol = add_data_column(tb, column)
        for start, n, (model,) in model_chunks(ms, tb, [sources], primary_beam, smearing):
            tb.putcol(column, np.repeat(model[:, :, None], npol, axis=2), startrow=start, nrow=n)


def add_data_column(tb, column: str) -> int:
    """Add ``column`` to ``tb`` (an MS main table open for writing) shaped and stored like DATA,
    unless it is there; returns the number of polarisations."""
    from casacore.tables import makearrcoldesc, maketabdesc

    shape = tb.getcell("DATA", 0).shape  # (nchan, npol)
    if column not in tb.colnames():
        dm = dict(tb.getdminfo("DATA"), NAME=f"Tiled{column.title().replace('_', '')}")
        tb.addcols(maketabdesc(makearrcoldesc(column, 0j, valuetype="complex", ndim=2, shape=list(shape), options=4)),
                   dm)
    return shape[1]


def model_chunks(ms: Path | str, tb, groups: list[list[SourceModel]], primary_beam: bool = True,
                 smearing: bool = True):
    """The model of each group of sources (as :func:`predict_model` writes it, one
    polarisation) over the rows of ``tb`` (the open main table of ``ms``), chunk by chunk:
    yields (first row, rows, [visibilities (rows, channels) complex64 in Jy, one per group]).
    The geometry is read once for every group. Memory: one chunk per group."""
    ms = Path(ms)
    sources = [s for g in groups for s in g]
    bounds = np.cumsum([0] + [len(g) for g in groups])
    freqs = channel_frequencies(ms)
    with casa_table(ms / "FIELD") as field_table:
        phase_dirs = field_table.getcol("PHASE_DIR")[:, 0, :]  # (nfield, 2)
    src_ra, src_dec = np.radians([s.ra_deg for s in sources]), np.radians([s.dec_deg for s in sources])
    fluxes = np.array([s.flux_at(freqs) for s in sources])  # (nsrc, nchan)
    unique_t, t_index = np.unique(tb.getcol("TIME"), return_inverse=True)
    pointing = pointing_directions(ms, unique_t)  # (nt, 3)
    attenuation = np.ones((len(sources), len(unique_t), len(freqs)))
    if primary_beam:
        cos = np.clip(radec_unit(src_ra, src_dec) @ pointing.T, -1.0, 1.0)  # (nsrc, nt)
        attenuation = airy_power_beam(cos[..., None], freqs, dish_diameter_m(ms))
    if smearing:
        uvw_rate = _uvw_rate(tb)  # m/s
        interval = tb.getcol("INTERVAL")
        with casa_table(ms / "SPECTRAL_WINDOW") as spw:
            width = float(np.mean(np.abs(spw.getcol("CHAN_WIDTH"))))
        tracked = np.stack([np.arctan2(pointing[:, 1], pointing[:, 0]), np.arcsin(np.clip(pointing[:, 2], -1, 1))], -1)
    amplitude = np.moveaxis(fluxes[:, None, :] * attenuation, 0, -1)  # (nt, nchan, nsrc) Jy
    for start, n in row_chunks(tb.nrows()):
        uvw = tb.getcol("UVW", startrow=start, nrow=n)
        field_id = tb.getcol("FIELD_ID", startrow=start, nrow=n)
        ti = t_index[start : start + n]
        models = [np.zeros((n, len(freqs)), dtype=np.complex64) for _ in groups]
        for f in np.unique(field_id):
            rows = np.flatnonzero(field_id == f)
            ra0, dec0 = phase_dirs[f]
            lmn = np.stack(direction_cosines(src_ra, src_dec, ra0, dec0), -1)  # (nsrc, 3)
            projected = uvw[rows] @ lmn.T / SPEED_OF_LIGHT_M_S  # (nrow, nsrc) s
            tau = projected - uvw[rows, 2:] / SPEED_OF_LIGHT_M_S
            gain, dtau = np.ones_like(tau), np.zeros_like(tau)
            if smearing:  # delays relative to the centre tracked during each row's integration
                centre = np.stack(direction_cosines(*tracked.T, ra0, dec0), -1)[ti[rows]]  # (nrow, 3)
                tracked_delay = np.einsum("rx,rx->r", uvw[rows], centre) / SPEED_OF_LIGHT_M_S
                gain = np.sinc(width * (projected - tracked_delay[:, None]))
                rate = uvw_rate[start + rows] * interval[start + rows, None] / SPEED_OF_LIGHT_M_S  # s per integration
                dtau = rate @ lmn.T - np.einsum("rx,rx->r", rate, centre)[:, None]
            for model, k0, k1 in zip(models, bounds[:-1], bounds[1:]):
                block = np.zeros((len(rows), len(freqs)), dtype=np.complex64)
                add_point_sources(block, tau[:, k0:k1], dtau[:, k0:k1], gain[:, k0:k1], amplitude[..., k0:k1],
                                  ti[rows], freqs, smearing)
                model[rows] = block
        yield start, n, models


def _uvw_rate(tb) -> np.ndarray:
    """d(UVW)/dt of every row (m/s): each baseline's UVW differenced across its integrations."""
    uvw = tb.getcol("UVW")
    t = tb.getcol("TIME")
    key = tb.getcol("ANTENNA1").astype(np.int64) * 100_000 + tb.getcol("ANTENNA2")
    order = np.lexsort((t, key))
    rate = np.zeros_like(uvw)
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    for rows in np.split(order, bounds):
        if len(rows) > 1:
            rate[rows] = np.gradient(uvw[rows], t[rows], axis=0)
    return rate


def direction_cosines(ra, dec, ra0, dec0) -> tuple:
    """(l, m, n) of directions (ra, dec) about the phase centre (ra0, dec0); radians, scalars
    or arrays alike."""
    dra = ra - ra0
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    n = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(dra)
    return l, m, n


def write_component_list(path: Path, sources: list[SourceModel]) -> Path:
    """The model as a CASA component list (point components with spectral index), for the
    record and for users who predict with ``ft``."""
    import casatools

    cl = casatools.componentlist()
    try:
        for s in sources:
            cl.addcomponent(
                flux=[s.flux_jy, 0.0, 0.0, 0.0], fluxunit="Jy", polarization="Stokes",
                dir=f"ICRS {s.ra_deg}deg {s.dec_deg}deg", shape="point",
                freq=f"{s.ref_freq_hz}Hz", spectrumtype="spectral index", index=s.spectral_index,
                label=s.name,
            )
        fsutil.remove(path)
        cl.rename(str(path))
    finally:
        cl.close()
        cl.done()
    return path

