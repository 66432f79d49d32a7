"""Forced photometry and variability statistics on images with known content."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from dsa_assets import variability
from dsa_assets.catalogue import CatalogueSource
from dsa_assets.sim.images import beam_correlated_noise, image_header
from dsa_assets.stages.photometry import (
    ImagePlanes,
    PhotometryConfig,
    beam_kernel,
    edge_margin_deg,
    fit_group,
    forced_fit,
    measure,
    near_row_end,
    new_source_candidates,
)


def synthetic_image(rng, sources, sigma=1e-3, size=256, cell_arcsec=10.0, bmaj=40.0, bmin=30.0, bpa=30.0,
                    centre_deg=(150.0, 30.0)):
    """A Jy/beam image with point sources convolved with the beam, and Gaussian noise whose
    correlation is the beam."""
    header = image_header(size, cell_arcsec, bmaj, bmin, bpa, centre_deg)
    w = WCS(header).celestial
    ys, xs = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size))
    for s in sources:
        x, y = w.world_to_pixel_values(s.ra_deg, s.dec_deg)
        image += s.flux_jy * beam_kernel(header, float(x), float(y), xs, ys)
    noise = beam_correlated_noise(header, (size, size), sigma, rng)
    return ImagePlanes(image + noise, np.full((size, size), sigma), header)


def grid_sources(n, rng, flux_range=(2e-3, 2e-2)):
    ra = 150.0 + rng.uniform(-0.25, 0.25, n) / np.cos(np.radians(30.0))
    dec = 30.0 + rng.uniform(-0.25, 0.25, n)
    flux = rng.uniform(*flux_range, n)
    return [CatalogueSource(f"S{i}", float(a), float(d), float(f)) for i, (a, d, f) in enumerate(zip(ra, dec, flux))]


def test_beam_kernel_orientation_follows_bpa():
    header = fits.Header({"CDELT1": -10 / 3600, "BMAJ": 60 / 3600, "BMIN": 20 / 3600, "BPA": 0.0})
    ys, xs = np.mgrid[-10:11, -10:11]
    k = beam_kernel(header, 0.0, 0.0, xs, ys)
    assert k[10, 10] == 1.0
    assert k[10 + 3, 10] > k[10, 10 + 3], "BPA 0: major axis north (along y)"
    header["BPA"] = 90.0
    k = beam_kernel(header, 0.0, 0.0, xs, ys)
    assert k[10, 10 - 3] > k[10 + 3, 10], "BPA 90: major axis east (toward -x)"
    # FWHM along the major axis: half power at BMAJ / 2 = 3 pixels
    header["BPA"] = 0.0
    assert beam_kernel(header, 0.0, 0.0, np.array([0.0]), np.array([3.0]))[0] == pytest.approx(0.5)


def test_dirty_beam_is_the_psfs_cubic_spline_at_any_offset():
    """The separable evaluation gives what scipy's order-3 map_coordinates gives on the same
    spline coefficients, on and between whole pixels, and 0 beyond the PSF image."""
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(3)
    psf = rng.normal(size=(151, 151))
    psf[75, 75] = 100.0
    planes = ImagePlanes(np.zeros((4, 4)), np.ones((4, 4)), {}, np.zeros((4, 4)), psf)
    ys, xs = np.mgrid[250:351, 440:571]
    for x, y in ((500.0, 300.0), (500.25, 300.0), (500.0, 299.6), (500.9, 300.01)):
        values = planes.dirty_beam(x, y, xs, ys)
        half, coefficients = planes._psf_spline  # the cut-out's coefficients, made by that call
        expected = map_coordinates(coefficients, [half + ys - y, half + xs - x], order=3, mode="constant",
                                   prefilter=False)
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
    assert planes.dirty_beam(500.0, 300.0, np.array([500]), np.array([300]))[0] == pytest.approx(100.0)
    assert abs(planes.dirty_beam(500.0, 300.0, np.array([500 + 110]), np.array([300]))[0]) < 1e-20


def test_forced_fluxes_are_unbiased_with_unit_pulls():
    rng = np.random.default_rng(2)
    pulls = []
    for _trial in range(12):
        sources = grid_sources(20, rng)
        planes = synthetic_image(rng, sources)
        result = measure(planes, sources, PhotometryConfig(detect_snr=1e9, systematic_fraction=0))
        forced = {m.source: m for m in result.forced()}
        assert len(forced) == len(sources)
        pulls += [(forced[s.name].flux_jy - s.flux_jy) / forced[s.name].flux_err_jy for s in sources]
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.15 and 0.85 < pulls.std() < 1.15, (pulls.mean(), pulls.std())


def test_residual_fitted_with_the_dirty_beam_and_the_clean_part_with_the_restoring_beam():
    """Half of each source cleaned (restoring-beam shaped), half left in the residual with the
    dirty beam's shape: a narrower main lobe with a negative ring, as Briggs weighting makes.
    The restoring beam alone under-reads such sources; the two-part fit reads them right."""
    rng = np.random.default_rng(8)
    size = 256
    sources = grid_sources(20, rng, flux_range=(0.02, 0.05))
    header = image_header(size, 10.0, 40.0, 30.0, 30.0)
    narrow, wide = header.copy(), header.copy()
    for h, factor in ((narrow, 0.85), (wide, 1.7)):
        h["BMAJ"], h["BMIN"] = header["BMAJ"] * factor, header["BMIN"] * factor
    ys, xs = np.mgrid[0:size, 0:size]

    def dirty_beam(x, y):
        return 1.4 * beam_kernel(narrow, x, y, xs, ys) - 0.4 * beam_kernel(wide, x, y, xs, ys)

    wcs = WCS(header).celestial
    cleaned, residual = np.zeros((size, size)), beam_correlated_noise(header, (size, size), 2e-4, rng)
    for src in sources:
        x, y = (float(v) for v in wcs.world_to_pixel_values(src.ra_deg, src.dec_deg))
        cleaned += 0.5 * src.flux_jy * beam_kernel(header, x, y, xs, ys)
        residual += 0.5 * src.flux_jy * dirty_beam(x, y)
    noise = np.full((size, size), 2e-4)
    config = PhotometryConfig(detect_snr=1e9, systematic_fraction=0, blank_fits=0)
    truth = {s.name: s.flux_jy for s in sources}

    def ratios(planes):
        return np.array([m.flux_jy / truth[m.source] for m in measure(planes, sources, config).forced()])

    two_part = ratios(ImagePlanes(cleaned + residual, noise, header, residual, dirty_beam(size // 2, size // 2)))
    beam_only = ratios(ImagePlanes(cleaned + residual, noise, header))
    assert len(two_part) == len(sources)
    assert abs(two_part.mean() - 1) < 0.01, two_part
    print(f"two-part {two_part.mean():.4f} ± {two_part.std():.4f}, restoring beam only {beam_only.mean():.4f}")
    assert beam_only.mean() < 0.95, beam_only.mean()


def test_errors_calibrated_on_blank_sky_when_the_noise_map_understates_the_noise():
    """A noise map at half the true noise (as when a residual misses deconvolution sidelobes):
    forced fits on blank sky scatter twice their predicted errors, the errors are scaled by
    that, and the sources' pulls come back to unit width. With a correct map nothing changes.
    The systematic term then adds its fraction of the flux in quadrature."""
    rng = np.random.default_rng(5)
    pulls, honest_pulls, scales = [], [], []
    for _trial in range(6):
        sources = grid_sources(20, rng)
        planes = synthetic_image(rng, sources)
        honest = measure(planes, sources, PhotometryConfig(detect_snr=1e9, systematic_fraction=0))
        assert honest.error_scale < 1.15
        understated = ImagePlanes(planes.data, planes.noise / 2, planes.header)
        result = measure(understated, sources, PhotometryConfig(detect_snr=1e9, systematic_fraction=0))
        scales.append(result.error_scale)
        for pulled, r in ((pulls, result), (honest_pulls, honest)):
            forced = {m.source: m for m in r.forced()}
            pulled += [(forced[s.name].flux_jy - s.flux_jy) / forced[s.name].flux_err_jy for s in sources]
    assert np.median(scales) == pytest.approx(2.0, rel=0.15)
    # without the scale these pulls would be twice as wide as with the correct noise map
    assert np.std(pulls) / np.std(honest_pulls) == pytest.approx(1.0, abs=0.15)
    uncalibrated = measure(understated, sources, PhotometryConfig(detect_snr=1e9, blank_fits=0, systematic_fraction=0))
    assert uncalibrated.error_scale == 1.0
    # the systematic part adds a fraction of the flux in quadrature
    with_systematic = {m.source: m for m in measure(planes, sources, PhotometryConfig(detect_snr=1e9)).forced()}
    for m in honest.forced():
        expected = np.hypot(m.flux_err_jy, 0.03 * m.flux_jy)
        assert with_systematic[m.source].flux_err_jy == pytest.approx(expected, rel=1e-6)


def test_errors_follow_the_residual_around_each_source_not_the_noise_map():
    """The residual three times noisier over the image's east half than its west (a
    neighbour's sidelobes, a deconvolution error), the noise map one level everywhere (a map
    smoothed over cells wider than the disturbance): each forced error follows the residual
    around its own source, and the pulls of both halves have unit width. The noise map's
    errors, even scaled on blank sky, leave the east half's pulls wide and the west's narrow."""
    rng = np.random.default_rng(11)
    size, quiet, loud = 256, 1e-3, 3e-3
    header = image_header(size, 10.0, 40.0, 30.0, 30.0)
    wcs = WCS(header).celestial
    ys, xs = np.mgrid[0:size, 0:size]
    east = xs < size // 2  # RA increases to the left
    columns = {"east": np.arange(20, 110, 22), "west": np.arange(150, 240, 22)}
    pulls: dict[str, list] = {"east": [], "west": []}
    map_pulls: dict[str, list] = {"east": [], "west": []}
    config = PhotometryConfig(detect_snr=1e9, systematic_fraction=0)
    for _trial in range(6):
        residual = np.where(east, beam_correlated_noise(header, (size, size), loud, rng),
                            beam_correlated_noise(header, (size, size), quiet, rng))
        sources, half_of = [], {}
        for half, cols in columns.items():
            for x in cols:
                for y in np.arange(20, 240, 22):
                    x_j, y_j = x + rng.uniform(-3, 3), y + rng.uniform(-3, 3)
                    ra, dec = wcs.pixel_to_world_values(x_j, y_j)
                    name = f"S{len(sources)}"
                    sources.append(CatalogueSource(name, float(ra), float(dec), float(rng.uniform(0.02, 0.05))))
                    half_of[name] = half
        cleaned = sum(s.flux_jy * beam_kernel(header, *(float(v) for v in wcs.world_to_pixel_values(s.ra_deg, s.dec_deg)),
                                              xs, ys) for s in sources)
        noise_map = np.full((size, size), quiet * 2)
        psf = beam_kernel(header, size // 2, size // 2, xs, ys)
        truth = {s.name: s.flux_jy for s in sources}
        for planes, out in ((ImagePlanes(cleaned + residual, noise_map, header, residual, psf), pulls),
                            (ImagePlanes(cleaned + residual, noise_map, header), map_pulls)):
            for m in measure(planes, sources, config).forced():
                out[half_of[m.source]].append((m.flux_jy - truth[m.source]) / m.flux_err_jy)
    widths = {half: float(np.std(p)) for half, p in pulls.items()}
    map_widths = {half: float(np.std(p)) for half, p in map_pulls.items()}
    print("pull widths around each source", widths, "noise map and blank sky", map_widths)
    assert all(len(p) > 250 for p in pulls.values())
    assert all(0.8 < w < 1.2 for w in widths.values()), widths
    assert map_widths["east"] > 1.3 and map_widths["west"] < 0.75, map_widths


def test_blind_detections_match_the_catalogue_and_find_a_new_source():
    rng = np.random.default_rng(5)
    sources = [CatalogueSource("bright", 150.05, 30.05, 0.05), CatalogueSource("faint", 149.9, 29.95, 0.002)]
    new = CatalogueSource("new", 150.1, 29.9, 0.03)
    planes = synthetic_image(rng, sources + [new])
    result = measure(planes, sources)
    blind = result.blind()
    assert {m.matched for m in blind if m.matched} == {"bright"}, "faint (2 sigma) is not detected"
    (unmatched,) = [m for m in blind if m.matched is None]
    assert abs(unmatched.ra_deg - 150.1) < 10 / 3600 and abs(unmatched.dec_deg - 29.9) < 10 / 3600
    assert unmatched.flux_jy == pytest.approx(0.03, rel=0.1)
    assert variability.is_new_source(unmatched.flux_jy, [0.002, 0.001])
    assert not variability.is_new_source(unmatched.flux_jy, [0.01])
    assert not variability.is_new_source(unmatched.flux_jy, [])
    earlier = [{"centre_ra_deg": 150.0, "centre_dec_deg": 30.0, "radius_deg": 1.0, "kind": "mosaic", "rms_jy": 0.001}]
    assert new_source_candidates(result, earlier, min_snr=0.0) == [unmatched]
    assert new_source_candidates(result, earlier, min_snr=unmatched.snr + 0.1) == []


def test_a_detection_between_two_catalogued_sources_is_their_blend_not_a_new_source():
    """Two catalogued sources 1.5 beams apart make one island above 5 sigma, whose centroid
    falls between them, out of reach of either: it is their blend (matched to the brighter,
    flagged), not an uncatalogued source; each is still measured by the forced fits."""
    rng = np.random.default_rng(3)
    dra = 30 / 3600 / np.cos(np.radians(30.0))
    pair = [CatalogueSource("east", 150.0 + dra, 30.0, 0.06), CatalogueSource("west", 150.0 - dra, 30.0, 0.04)]
    result = measure(synthetic_image(rng, pair), pair)
    (blend,) = result.blind()
    assert abs(blend.ra_deg - 150.0) < 0.5 * dra, "the centroid lies between them"
    assert blend.matched == "east" and blend.flags == "blend"
    earlier = [{"centre_ra_deg": 150.0, "centre_dec_deg": 30.0, "radius_deg": 1.0, "kind": "mosaic", "rms_jy": 0.001}]
    assert new_source_candidates(result, earlier) == []
    forced = {m.source: m.flux_jy for m in result.forced()}
    assert forced["east"] == pytest.approx(0.06, abs=0.005) and forced["west"] == pytest.approx(0.04, abs=0.005)


def test_a_detection_is_judged_new_against_the_noise_earlier_images_had_where_it_lies(tmp_path):
    """An earlier observation image whose residual is 10 times noisier around the detection (a
    bright source's sidelobes) than elsewhere: the detection is as bright as its artefacts
    were there, so not new, though five times its median rms; quiet there, it is new; its
    files gone, its median rms over the beam's response judges."""
    from dsa_assets.stages.photometry import noise_at

    rng = np.random.default_rng(5)
    new = CatalogueSource("new", 150.1, 29.9, 0.03)
    result = measure(synthetic_image(rng, [new]), [])
    (detection,) = [m for m in result.blind() if m.matched is None]
    header = image_header(256, 10.0, 40.0, 30.0, 30.0, (150.0, 30.0))
    x, y = (int(round(float(v))) for v in WCS(header).celestial.world_to_pixel_values(150.1, 29.9))

    def earlier(name, noisy: bool) -> dict:
        residual = rng.normal(0.0, 0.001, (256, 256))
        if noisy:
            residual[y - 40:y + 40, x - 40:x + 40] *= 10.0
        fits.writeto(tmp_path / f"{name}-residual.fits", residual.astype(np.float32), header)
        fits.writeto(tmp_path / f"{name}-pb.fits", np.full((256, 256), 0.8, np.float32), header)
        return {"centre_ra_deg": 150.0, "centre_dec_deg": 30.0, "radius_deg": 0.5, "kind": "observation",
                "rms_jy": 0.001, "path": str(tmp_path / f"{name}-image.fits")}

    noisy, quiet = earlier("noisy", True), earlier("quiet", False)
    assert noise_at(noisy, 150.1, 29.9) == pytest.approx(0.01 / 0.8, rel=0.15)
    assert noise_at(quiet, 150.1, 29.9) == pytest.approx(0.001 / 0.8, rel=0.15)
    assert noise_at(quiet, 151.0, 30.0) is None, "outside the image"
    assert new_source_candidates(result, [noisy]) == []
    assert new_source_candidates(result, [quiet]) == [detection]
    assert new_source_candidates(result, [noisy, quiet]) == [detection], "the lowest noise any image had"
    (tmp_path / "noisy-residual.fits").unlink()  # retention removed it: the median rms judges
    assert new_source_candidates(result, [noisy]) == [detection]


def test_an_unexplained_detection_beside_an_images_east_or_west_end_begins_no_source():
    """Sidelobes of sources beyond an image fall at its edges; the east and west edges are seen
    again nearer the centre of the next image, the north and south edges never."""
    rng = np.random.default_rng(7)
    # at Dec +80 one observation drifts 0.22 deg, well under this 0.71 deg image
    w = WCS(image_header(256, 10.0, 40.0, 30.0, 30.0, (150.0, 80.0))).celestial

    def at(name, x, y, flux=0.03):
        ra, dec = w.pixel_to_world_values(x, y)
        return CatalogueSource(name, float(ra), float(dec), flux)

    known = [at("known", 10, 60)]
    unexplained = [at("west", 12, 200), at("inner", 128, 128), at("north", 128, 245), at("beside-blank", 180, 60)]
    planes = synthetic_image(rng, known + unexplained, centre_deg=(150.0, 80.0))
    planes.data[:, 200:] = np.nan  # blanked (beyond the primary-beam cut-off)
    config = PhotometryConfig(edge_margin_deg=0.1, blank_fits=0)  # 36 pixels
    margin_pixels = 0.1 * 3600 / 10.0

    def reported(result):
        return {min(unexplained, key=lambda s: (s.ra_deg - m.ra_deg) ** 2 + (s.dec_deg - m.dec_deg) ** 2).name
                for m in result.blind() if m.matched is None}

    assert reported(measure(planes, known, replace(config, edge_margin_deg=0.0))) == {"west", "inner", "north", "beside-blank"}
    result = measure(planes, known, config)
    assert reported(result) == {"inner", "north"}
    assert [m.matched for m in result.blind() if m.matched] == ["known"], "a known source is measured at the edge"
    assert near_row_end(planes.data, 12, 200, margin_pixels) and not near_row_end(planes.data, 128, 128, margin_pixels)
    assert near_row_end(planes.data, 180, 60, margin_pixels) and not near_row_end(planes.data, 128, 245, margin_pixels)
    # at Dec +30 the drift (1.12 deg) exceeds the image's width: a margin would leave sky unsearched
    assert edge_margin_deg(planes.header, 256, 0.1) == 0.1
    assert edge_margin_deg(image_header(256, 10.0, 40.0, 30.0, 30.0), 256, 0.1) == 0.0
    assert edge_margin_deg(image_header(2048, 6.0, 40.0, 30.0, 30.0, (150.0, 55.0)), 2048, 2.0) == pytest.approx(
        (3.41 - 0.74) / 2, abs=0.01)


def test_new_sources_are_held_to_the_survey_wide_noise_peaks():
    """A fixed 5 sigma lets every full-array image (56,000 beams) offer 0.016 noise peaks, a day
    4.5: the new-source threshold follows the image's size and the day's budget instead."""
    from scipy.stats import norm

    per_image = variability.EXPECTED_FALSE_NEW_SOURCES_PER_DAY / 280
    snr = variability.new_source_snr(56_000, per_image)
    assert 5.6 < snr < 5.8
    assert 56_000 * norm.sf(snr) * 280 == pytest.approx(variability.EXPECTED_FALSE_NEW_SOURCES_PER_DAY)
    assert 56_000 * norm.sf(5.0) * 280 > 4
    assert variability.new_source_snr(5_000, per_image) < snr, "fewer beams, fewer chances"
    assert variability.new_source_snr(10, 1.0) == 5.0, "never below the detection threshold"


# -- variability ----------------------------------------------------------------------------------


def test_vast_definitions():
    flux, err = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.1, 0.2])
    w = 1 / err**2
    assert variability.coefficient_of_variation(flux) == pytest.approx(1.0 / 2.0)
    expected_eta = 3 / 2 * (np.mean(w * flux**2) - np.mean(w * flux) ** 2 / np.mean(w))
    assert variability.eta(flux, err) == pytest.approx(expected_eta)
    vs, m, pair = variability.most_significant_pair(flux, err)
    # |Vs| of the pairs: (0, 1) 7.1, (0, 2) 8.9, (1, 2) 4.5
    assert pair == (0, 2) and vs == pytest.approx(-2.0 / np.hypot(0.1, 0.2))
    assert m == pytest.approx(2 * (1.0 - 3.0) / 4.0)


def test_the_most_significant_pair_of_a_year_is_found_among_candidates(monkeypatch):
    rng = np.random.default_rng(3)
    for trial in range(5):
        flux = 1 + rng.normal(0, 0.03, 2500)
        err = 0.03 * rng.uniform(0.7, 1.3, 2500)
        fast = variability.most_significant_pair(flux, err)
        with monkeypatch.context() as m:
            m.setattr(variability, "PAIR_CANDIDATES", 10**6)   # every pair
            assert variability.most_significant_pair(flux, err) == fast, trial


def test_a_long_constant_light_curve_is_not_variable_by_its_luckiest_pair():
    rng = np.random.default_rng(5)
    n, err = 700, 0.001   # 100 days of 7 epochs: 244,650 pairs
    flagged, by_fixed_pair = 0, 0
    for _ in range(100):
        flux = 0.01 + err * rng.standard_normal(n)   # a faint constant source, errors right
        m = variability.metrics(flux, np.full(n, err))
        flagged += m.variable
        by_fixed_pair += abs(m.vs) >= variability.Thresholds().vs and abs(m.m) >= variability.Thresholds().m
    assert variability.pair_threshold(6) == 4.3 and variability.pair_threshold(n) == pytest.approx(5.88, abs=0.01)
    assert flagged <= 1, flagged
    assert by_fixed_pair >= 50, "the two-epoch threshold alone would flag most of them"


def test_flare_and_step_flagged_constant_sources_rarely():
    rng = np.random.default_rng(9)
    n, err = 30, 0.01
    t = np.arange(n)
    flare = 0.1 + 0.08 * np.exp(-0.5 * ((t - 15) / 1.5) ** 2)
    step = np.where(t < 12, 0.1, 0.14)
    for curve in (flare, step):
        m = variability.metrics(curve + err * rng.standard_normal(n), np.full(n, err))
        assert m.variable, m
    false_positives = 0
    trials = 2000
    for _ in range(trials):
        m = variability.metrics(0.1 + err * rng.standard_normal(n), np.full(n, err))
        false_positives += m.variable
    # eta threshold at p = 0.001 and the two-epoch criterion together: well under 1%
    assert false_positives / trials < 0.01


def _pair(separation_fwhm: float, faint_jy: float = 0.01, bright_jy: float = 5.0, seed: int = 5,
          bright_position_error_arcsec: float = 0.01):
    """A bright and a faint source ``separation_fwhm`` restoring beams apart (north), on a
    40" round beam, the bright one's position known to ``bright_position_error_arcsec``:
    (planes, bright, faint, faint pixel position)."""
    rng = np.random.default_rng(seed)
    header = image_header(256, 10.0, 40.0, 40.0, 0.0)
    wcs = WCS(header).celestial
    xy = (128.0, 128.0 + 4.0 * separation_fwhm)
    (ra0, dec0), (ra1, dec1) = wcs.pixel_to_world_values(128.0, 128.0), wcs.pixel_to_world_values(*xy)
    bright = CatalogueSource("BRIGHT", float(ra0), float(dec0), bright_jy,
                             position_error_arcsec=bright_position_error_arcsec)
    faint = CatalogueSource("FAINT", float(ra1), float(dec1), faint_jy)
    return synthetic_image(rng, [bright, faint], sigma=1e-3, bpa=0.0, bmin=40.0), bright, faint, xy


@pytest.mark.parametrize("two_part", [False, True])
def test_a_faint_source_beside_a_bright_one_reads_its_own_flux(two_part):
    """10 mJy 1.5 beams from 5 Jy: fitted alone, the faint source reads the bright one's wing;
    fitted together it reads its own flux, also when the bright one is not in the catalogue
    (found blind) and with the residual fitted with the dirty beam."""
    planes, bright, faint, xy = _pair(1.5)
    if two_part:  # the whole image left as residual, the dirty beam equal to the restoring beam
        ys, xs = np.mgrid[0:256, 0:256]
        planes = ImagePlanes(planes.data, planes.noise, planes.header, planes.data,
                             beam_kernel(planes.header, 128.0, 128.0, xs, ys))
    config = PhotometryConfig(systematic_fraction=0, blank_fits=0)
    alone, err, _ = forced_fit(planes, *xy, 4.0)
    assert alone > 0.05, f"alone it reads {alone * 1e3:.1f} mJy"
    for catalogue in ([bright, faint], [faint]):
        m = {x.source: x for x in measure(planes, catalogue, config).forced()}
        assert abs(m["FAINT"].flux_jy - 0.01) < 3 * m["FAINT"].flux_err_jy, (m["FAINT"], len(catalogue))
        assert m["FAINT"].flags == "" and m["FAINT"].flux_err_jy < 2 * err
        if len(catalogue) == 2:
            assert m["BRIGHT"].flux_jy == pytest.approx(5.0, rel=0.01)


def test_a_faint_source_its_neighbours_position_error_can_swamp_is_flagged_blend():
    """10 mJy 1.5 beams from 5 Jy, the bright one's position known to 2 arcsec: moved by that,
    its wing moves the faint one's fit by several times its error (the leakage the fit
    predicts), so the faint measurement is the neighbour's as much as its own and is flagged;
    known to 0.01 arcsec (a calibrator's position), it is not. The leakage predicted is the change a 2 arcsec shift
    makes."""
    config = PhotometryConfig(systematic_fraction=0, blank_fits=0)
    planes, bright, faint, _ = _pair(1.5, bright_position_error_arcsec=2.0)
    m = {x.source: x for x in measure(planes, [bright, faint], config).forced()}
    assert m["FAINT"].flags == "blend" and m["BRIGHT"].flags == ""
    shifted = replace(bright, dec_deg=bright.dec_deg + 2.0 / 3600)
    moved = {x.source: x for x in measure(planes, [shifted, faint], config).forced()}
    change = abs(moved["FAINT"].flux_jy - m["FAINT"].flux_jy)
    assert change > 2 * m["FAINT"].flux_err_jy, (change, m["FAINT"].flux_err_jy)
    wcs = WCS(planes.header).celestial
    xy = [tuple(float(v) for v in wcs.world_to_pixel_values(s.ra_deg, s.dec_deg)) for s in (faint, bright)]
    _, leakage = fit_group(planes, xy, 4.0, report=0, position_errors=[0.0, 0.2])  # 2" in 10" pixels
    # moved along the line between them: all of the leakage, the wing being symmetric across it
    assert change == pytest.approx(leakage[0], rel=0.2), (change, leakage[0])
    precise, bright, faint, _ = _pair(1.5, bright_position_error_arcsec=0.01)
    assert {x.source: x.flags for x in measure(precise, [bright, faint], config).forced()}["FAINT"] == ""


def test_sources_that_cannot_be_separated_are_flagged_blend():
    planes, bright, faint, _ = _pair(0.1, faint_jy=1.0, bright_jy=1.0)
    m = {x.source: x for x in measure(planes, [bright, faint], PhotometryConfig(blank_fits=0)).forced()}
    assert m["FAINT"].flags == "blend" and m["BRIGHT"].flags == "blend"
    far, bright, faint, _ = _pair(3.0, faint_jy=1.0, bright_jy=1.0)
    m = {x.source: x for x in measure(far, [bright, faint], PhotometryConfig(blank_fits=0)).forced()}
    assert m["FAINT"].flags == m["BRIGHT"].flags == ""
    assert m["FAINT"].flux_jy == pytest.approx(1.0, rel=0.01)


def test_measurements_where_the_primary_beam_is_low_are_flagged_and_begin_no_new_source(tmp_path):
    """The primary beam falls from 1 to 0.05 across the image's rows: a catalogued source where
    it is 0.55 is measured plainly, one where it is 0.12 is flagged ``low_beam`` (measured all
    the same), one beyond the 0.1 cutoff is not measured (its fit would reach only the wing
    that crosses into the image), and an uncatalogued detection where the beam is low is not a
    new-source candidate, while one where it is high is. The flags keep them out of the
    flux-scale check."""
    from dsa_assets import qa
    from dsa_assets.stages.photometry import PhotometryStage

    rng = np.random.default_rng(11)
    high, low = CatalogueSource("HIGH", 150.0, 30.0, 0.05), CatalogueSource("LOW", 150.0, 30.31, 0.05)
    beyond = CatalogueSource("BEYOND", 150.2, 30.322, 0.05)  # row 244: the beam 0.09
    new_high, new_low = CatalogueSource("NEWHIGH", 150.15, 30.0, 0.05), CatalogueSource("NEWLOW", 149.85, 30.31, 0.05)
    planes = synthetic_image(rng, [high, low, beyond, new_high, new_low])
    beam = np.repeat(np.linspace(1.0, 0.05, 256)[:, None], 256, axis=1)
    # the files an observation's image leaves: apparent flux (times the beam), residual, beam
    header = planes.header
    fits.writeto(tmp_path / "image.fits", (planes.data * beam).astype(np.float32), header)
    fits.writeto(tmp_path / "residual.fits", (rng.normal(0, 1e-3, beam.shape) * beam).astype(np.float32), header)
    fits.writeto(tmp_path / "pb.fits", beam.astype(np.float32), header)
    result = PhotometryStage(PhotometryConfig(blank_fits=0)).execute_observation(
        tmp_path / "image.fits", tmp_path / "residual.fits", tmp_path / "pb.fits", [high, low, beyond])
    forced = {m.source: m for m in result.forced()}
    assert set(forced) == {"HIGH", "LOW"}
    assert forced["HIGH"].flags == "" and forced["LOW"].flags == "low_beam"
    assert forced["LOW"].flux_jy == pytest.approx(0.05, rel=0.1), "measured, corrected for the beam"
    unmatched = {m.flags for m in result.blind() if m.matched is None}
    assert unmatched == {"", "low_beam"}
    earlier = [{"centre_ra_deg": 150.0, "centre_dec_deg": 30.0, "radius_deg": 1.0, "kind": "mosaic", "rms_jy": 0.001}]
    (candidate,) = new_source_candidates(result, earlier)
    assert abs(candidate.ra_deg - new_high.ra_deg) < 10 / 3600
    reference = {s.name: s for s in (high, low)}
    assert qa.compare_with_catalogue(result.measurements, reference).n_flux == 1
    everywhere = PhotometryStage(PhotometryConfig(blank_fits=0, low_beam=0.1)).execute_observation(
        tmp_path / "image.fits", tmp_path / "residual.fits", tmp_path / "pb.fits", [high, low])
    assert all(m.flags == "" for m in everywhere.forced())


def test_an_image_is_held_to_the_catalogue_by_its_bright_unblended_sources():
    from dsa_assets import qa
    from dsa_assets.stages.photometry import Measurement

    reference = {f"S{i}": CatalogueSource(f"S{i}", 150.0 + 0.1 * i, 30.0, 1.0, spectral_index=-0.7) for i in range(5)}

    def forced(scale, flags=""):
        return [Measurement(f"S{i}", 150.0 + 0.1 * i, 30.0, scale, 0.01, 0.01, "forced", flags=flags) for i in range(5)]

    def blind(offset_arcsec):
        return [Measurement(f"S{i}", 150.0 + 0.1 * i, 30.0 + offset_arcsec / 3600, 1.0, 0.01, 0.01, "blind",
                            matched=f"S{i}") for i in range(5)]

    good = qa.compare_with_catalogue(forced(1.0) + blind(1.0), reference)
    assert good.flux_ratio == 1.0 and good.n_flux == 5 and good.offset_dec_arcsec == pytest.approx(1.0)
    assert good.problems(beam_minor_arcsec=38.0) == []
    low = qa.compare_with_catalogue(forced(0.7) + blind(20.0), reference)
    assert [p.split(" ")[0] for p in low.problems(beam_minor_arcsec=38.0)] == ["flux", "positions"]
    # catalogue fluxes taken to the image's frequency with their spectral index
    at_1_6 = qa.compare_with_catalogue(forced((1.6 / 1.4) ** -0.7), reference, freq_hz=1.6e9)
    assert at_1_6.flux_ratio == pytest.approx(1.0)
    # blends, faint sources and too few sources say nothing
    assert qa.compare_with_catalogue(forced(0.5, flags="blend"), reference).problems(38.0) == []
    assert qa.compare_with_catalogue(forced(0.5)[:2], reference).problems(38.0) == []


@pytest.mark.parametrize("flag", ["bad_image", "low_beam", "blend,low_beam"])
def test_a_bad_epoch_is_kept_out_of_the_light_curve_statistics(tmp_path, flag):
    """Ten epochs of constant sources, one 30% low and flagged (its image failed the catalogue
    checks, or the primary beam was low there): the variability table flags none of them;
    counted, the bad epoch would make them variable."""
    from dsa_assets.products import ProductsDB
    from dsa_assets.stages.variability import VariabilityConfig, VariabilityStage

    db = ProductsDB(tmp_path / "p.sqlite3")
    rng = np.random.default_rng(3)
    for epoch in range(10):
        scale, flags = (0.7, flag) if epoch == 4 else (1.0, "")
        image = {"image_id": f"I{epoch}", "kind": "observation", "partition_key": "k", "path": "x",
                 "epoch_unix": 1e9 + epoch * 86164.0}
        rows = [{"source_name": f"S{i}", "epoch_unix": image["epoch_unix"], "kind": "forced",
                 "flux_jy": scale * (0.1 + 0.002 * rng.normal()), "flux_err_jy": 0.002, "flags": flags}
                for i in range(20)]
        db.record_photometry(image, rows)
    result = VariabilityStage(VariabilityConfig(tmp_path / "out", tmp_path / "scratch")).execute(db)
    assert len(result.rows) == 20 and result.variable == []
    assert all(len(db.light_curve(f"S{i}", usable_only=True)) == 9 for i in range(20))
    ungated = [i for i in range(20) if variability.metrics(*zip(*[(r["flux_jy"], r["flux_err_jy"])
                                                                 for r in db.light_curve(f"S{i}")])).variable]
    assert len(ungated) == 20


def test_an_uncatalogued_source_is_not_variable_by_its_discovery_alone(tmp_path, capsys):
    """A noise peak that began an uncatalogued source (7 sigma in one image, nothing in the six
    after) is not variable: its discovery was picked for being high and is left out of its
    statistics. One found the same way that stays bright is not variable either; one that
    flares again later is."""
    from dsa_assets.products import ProductsDB
    from dsa_assets.stages.variability import VariabilityConfig, VariabilityStage

    db = ProductsDB(tmp_path / "p.sqlite3")
    rng = np.random.default_rng(4)
    ras = {"peak": 150.0, "steady": 150.5, "flare": 151.0}
    created = {}
    for epoch in range(7):
        image = {"image_id": f"I{epoch}", "kind": "observation", "partition_key": "k", "path": "x",
                 "epoch_unix": 1e9 + epoch * 86164.0, "centre_ra_deg": 150.5, "centre_dec_deg": 30.0,
                 "radius_deg": 2.0}
        true = {"peak": 0.0, "steady": 0.05, "flare": 0.1 if epoch == 5 else 0.05}
        if epoch == 0:
            true["peak"] = 0.014
            detections = [{"ra_deg": ra, "dec_deg": 30.0, "ra_err_arcsec": 2.0, "dec_err_arcsec": 2.0,
                           "flux_jy": true[k], "flux_err_jy": 0.002, "local_rms_jy": 0.002, "snr": true[k] / 0.002,
                           "flags": "", "source_name": None, "de_ruiter": None, "new": False}
                          for k, ra in ras.items()]
            made = db.record_photometry(image, [], detections)
            created = {k: next(c["name"] for c in made.created if abs(c["ra_deg"] - ra) < 0.01) for k, ra in ras.items()}
            # the platform then measures them (forced) in the image that found them
            db.add_measurements("I0", [{"source_name": created[k], "epoch_unix": image["epoch_unix"], "kind": "forced",
                                        "flux_jy": true[k], "flux_err_jy": 0.002, "flags": ""} for k in ras])
            continue
        rows = [{"source_name": created[k], "epoch_unix": image["epoch_unix"], "kind": "forced",
                 "flux_jy": true[k] + 0.002 * rng.normal(), "flux_err_jy": 0.002, "flags": ""} for k in ras]
        db.record_photometry(image, rows)
    result = VariabilityStage(VariabilityConfig(tmp_path / "out", tmp_path / "scratch")).execute(db)
    assert {r["source"]: r["n"] for r in result.rows} == {created[k]: 6 for k in ras}
    assert [v.name for v in result.variable] == [created["flare"]]
    whole = db.light_curve(created["peak"])
    assert [(r["image_id"], r["discovery"], r["counted"]) for r in whole[:2]] == [("I0", True, False), ("I1", False, True)]
    assert variability.metrics([r["flux_jy"] for r in whole], [0.002] * 7).variable, "counted, it would be"
    # every reader of the light curve shows the discovery as not counted
    from dsa_assets import cli, exports

    table = exports.light_curve_table(db, created["peak"])
    assert [(k, bool(c)) for k, c in zip(table["kind"], table["counted"])][:3] == [
        ("forced", False), ("blind", False), ("forced", True)], "the discovery image's fit and detection"
    assert exports.shown_flags(whole[0]) == "discovery"
    assert cli.main(["lightcurve", "--products-db", str(tmp_path / "p.sqlite3"), "--source", created["peak"]]) == 0
    printed = capsys.readouterr().out
    assert "discovery" in printed and "variable=no (its discovery left out)" in printed


def test_a_survey_of_thousands_flags_no_constant_source():
    """Five tables of 4,000 constant sources of 12 epochs with correct errors: at 0.001 per
    source each table flags several; at the survey-wide rate (0.1 expected per table, 0.5 over
    the five) hardly any, while a 40% flare at per-epoch S/N 20 still is flagged."""
    rng = np.random.default_rng(11)
    n_table, n_epochs = 4000, 12
    err = np.full(n_epochs, 0.01)
    curves = 0.2 + err * rng.standard_normal((5 * n_table, n_epochs))
    per_source = variability.Thresholds()
    survey = variability.Thresholds(false_alarm=variability.per_source_false_alarm(0.1, n_table))
    assert survey.false_alarm == pytest.approx(2.5e-5)
    assert variability.per_source_false_alarm(0.1, 30) == 1e-3, "small tables keep the 0.001 ceiling"
    assert sum(variability.metrics(c, err, per_source).variable for c in curves) >= 10
    assert sum(variability.metrics(c, err, survey).variable for c in curves) <= 2
    flare = 0.2 + err * rng.standard_normal(n_epochs)
    flare[5:7] *= 1.4
    assert variability.metrics(flare, err, survey).variable


def test_pulls_of_simulated_sources_are_chosen_by_their_true_flux():
    """Sources near the pull check's 5 sigma cut, measured with unit Gaussian errors: chosen by
    their true flux the pulls have mean 0; chosen by the measured signal-to-noise they would
    read high (noise lifts some over the cut and drops others under it)."""
    from types import SimpleNamespace

    from dsa_assets import qa

    rng = np.random.default_rng(5)
    true = rng.uniform(3.0, 7.0, 20000)  # Jy, with 1 Jy errors: 3-7 sigma
    measured = true + rng.standard_normal(true.size)
    truth = SimpleNamespace(sources=[SimpleNamespace(name=f"S{i}", flux_jy=f) for i, f in enumerate(true)])
    rows = [{"source_name": f"S{i}", "flux_jy": m, "flux_err_jy": 1.0, "snr": m} for i, m in enumerate(measured)]
    pulls = np.array(qa.forced_pulls(rows, truth))
    assert len(pulls) == int(np.sum(true > qa.PULL_SNR))
    assert abs(pulls.mean()) < 0.03 and abs(pulls.std() - 1) < 0.03
    by_measured = (measured - true)[measured > qa.PULL_SNR]
    assert by_measured.mean() > 0.15  # what the check read before
