"""Calibrator sky models: point-source components, the model of a calibrator transit (the
calibrator and the catalogue sources near it), and MODEL_DATA predicted from them.

:func:`predict_model` writes MODEL_DATA = sum_k S_k(nu) A_k(t, nu) exp(+2 pi i (u l + v m +
w (n - 1)) nu / c) with the MS's UVW and the FIELD's PHASE_DIR (CASA's convention, see
``docs/conventions.md``). A_k is the primary-beam power response at the source: an Airy pattern
of the ANTENNA table's dish diameter centred on the POINTING direction at each time, so a
calibrator drifting through a transit array's fixed beam is modelled as it is observed. Any
Measurement Set with one spectral window and J2000/ICRS field directions will do. Plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import fsutil
from ..geometry import SPEED_OF_LIGHT_M_S, airy_power_beam
from .ms_inspect import casa_table, channel_frequencies, dish_diameter_m, pointing_directions, radec_unit, row_chunks


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


def predict_model(ms: Path | str, sources: list[SourceModel], primary_beam: bool = True) -> None:
    """Write MODEL_DATA of ``ms`` (created if absent) for ``sources`` (see module docstring).

    With ``primary_beam`` off, the flux densities are taken as apparent (already attenuated).
    """
    from casacore.tables import makearrcoldesc, maketabdesc

    ms = Path(ms)
    freqs = channel_frequencies(ms)
    with casa_table(ms / "FIELD") as tb:
        phase_dirs = tb.getcol("PHASE_DIR")[:, 0, :]  # (nfield, 2)
    diameter = dish_diameter_m(ms)
    src_unit = radec_unit(np.radians([s.ra_deg for s in sources]), np.radians([s.dec_deg for s in sources]))
    fluxes = np.array([s.flux_at(freqs) for s in sources])  # (nsrc, nchan)
    with casa_table(ms, readonly=False) as tb:
        n_pol = tb.getcell("DATA", 0).shape[1]
        if "MODEL_DATA" not in tb.colnames():
            dm = dict(tb.getdminfo("DATA"), NAME="TiledModelData")
            tb.addcols(maketabdesc(makearrcoldesc("MODEL_DATA", 0j, valuetype="complex", ndim=2,
                                                  shape=[len(freqs), n_pol], options=4)), dm)
        all_times = tb.getcol("TIME")
        unique_t, t_index = np.unique(all_times, return_inverse=True)
        attenuation = np.ones((len(sources), len(unique_t), len(freqs)))
        if primary_beam:
            pointing = pointing_directions(ms, unique_t)  # (nt, 3)
            cos = np.clip(src_unit @ pointing.T, -1.0, 1.0)  # (nsrc, nt)
            attenuation = airy_power_beam(cos[..., None], freqs, diameter)
        for start, n in row_chunks(tb.nrows()):
            uvw = tb.getcol("UVW", startrow=start, nrow=n)
            field_id = tb.getcol("FIELD_ID", startrow=start, nrow=n)
            ti = t_index[start : start + n]
            model = np.zeros((n, len(freqs)), dtype=np.complex128)
            for f in np.unique(field_id):
                rows = field_id == f
                ra0, dec0 = phase_dirs[f]
                for k, s in enumerate(sources):
                    l, m, nn = _lmn(np.radians(s.ra_deg), np.radians(s.dec_deg), ra0, dec0)
                    delay = uvw[rows] @ np.array([l, m, nn - 1.0])  # metres
                    phase = np.exp(2j * np.pi * delay[:, None] * freqs[None, :] / SPEED_OF_LIGHT_M_S)
                    model[rows] += fluxes[k][None, :] * attenuation[k][ti[rows]] * phase
            tb.putcol("MODEL_DATA", np.repeat(model[:, :, None], n_pol, axis=2).astype(np.complex64),
                      startrow=start, nrow=n)


def _lmn(ra, dec, ra0, dec0) -> tuple[float, float, float]:
    dra = ra - ra0
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    n = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(dra)
    return float(l), float(m), float(n)


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

