"""Settings are declared once: every field is an option of ``dsa110-stream`` and a key of the
settings file, with one default everywhere, and a bad value stops the start naming the option
and what it accepts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import yaml

from dsa_assets import variability
from dsa_assets.exceptions import SettingsError
from dsa_assets.service.cli import main, parse_settings
from dsa_assets.stages.calibration import CalibrationConfig
from dsa_assets.stages.flagging import FlaggingConfig
from dsa_assets.stages.imaging import ImagingConfig
from dsa_assets.stages.peeling import PeelingConfig
from dsa_assets.stages.photometry import PhotometryConfig
from dsa_assets.stages.variability import VariabilityConfig
from resources.calibration import CalibrationResource
from resources.imaging import ImagingResource
from resources.pipeline import PipelineResource
from resources.settings import Settings, all_option_specs


def other_value(spec, tmp_path):
    """A value of the setting's type that is not its default, and how to write it as options."""
    if spec.type is bool:
        return (not spec.default), [spec.flag]
    if spec.choices:
        value = next(c for c in spec.choices if c != spec.default)
    elif spec.path:
        value = str(tmp_path / spec.name)
    elif spec.metavar == "POLICY":  # a retention policy: a form the default is not
        value = "12h" if spec.default == "forever" else "forever"
    elif spec.type is str:
        value = "x" + str(spec.default or "")
    elif spec.type is int:
        value = int(spec.default or 0) + 7
    else:
        value = float(spec.default or 0.0) + 1.25
    return value, [spec.flag, str(value)]


def test_every_setting_is_an_option_and_survives_the_settings_file(tmp_path):
    specs = all_option_specs()
    flags = [f for s in specs for f in (s.flag, *s.aliases)]
    assert len(flags) == len(set(flags)), "no two settings share an option"
    assert len({s.name for s in specs}) == len(specs), "no two settings share a name"
    assert all(s.help for s in specs), [s.name for s in specs if not s.help]
    argv, expected = [], {}
    for spec in specs:
        expected[spec.dest], words = other_value(spec, tmp_path)
        argv += words
    _, settings = parse_settings(argv)
    for spec in specs:
        assert getattr(getattr(settings, spec.section), spec.name) == expected[spec.dest], spec.flag
    written = settings.write(tmp_path / "settings.yaml")
    assert Settings.read(written) == settings
    # a settings file is a starting point that options override
    _, again = parse_settings(["--settings", str(written), "--image-size", "512"])
    assert again.imaging.size == 512 and again.model_copy(update={"imaging": settings.imaging}) == settings


def test_one_default_everywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, from_options = parse_settings(["--input-dir", "in", "--output-dir", "out"])
    assert from_options == Settings(input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"))
    # the resources build the stages from their fields: same names, same defaults
    pairs = [(ImagingResource, ImagingConfig, set()), (resources_science(), PhotometryConfig, {
        "enable_photometry", "enable_mosaic_creation", "new_source_factor", "mosaic_inputs", "mosaic_timeout_s",
        "max_rms_over_thermal", "variability_interval_s", "backfill_days",
        "explorer_url", "expected_false_variables", "expected_false_new_sources_per_day", "new_source_images"})]
    for resource, config, elsewhere in pairs:
        defaults = {f.name: f.default for f in dataclasses.fields(config)}
        assert set(resource.model_fields) - elsewhere <= set(defaults), resource.__name__
        for name in set(resource.model_fields) - elsewhere:
            assert resource.model_fields[name].default == defaults[name], f"{resource.__name__}.{name}"
    assert CalibrationResource.model_fields["rfi_flagger"].default == FlaggingConfig.rfi
    assert CalibrationResource.model_fields["flag_workers"].default == FlaggingConfig.workers
    assert CalibrationResource.model_fields["keep_raw_data"].default == CalibrationConfig.keep_raw_data
    assert CalibrationResource.model_fields["peel_a_team_above_jy"].default == PeelingConfig.a_team_above_jy
    assert CalibrationResource.model_fields["peel_above_jy"].default == PeelingConfig.above_jy
    assert CalibrationResource.model_fields["peel_in_field_above_jy"].default == PeelingConfig.in_field_above_jy
    assert CalibrationResource.model_fields["peel_solution_bands"].default == PeelingConfig.solution_bands
    assert CalibrationResource.model_fields["peel_cycles"].default == PeelingConfig.cycles
    assert CalibrationResource.model_fields["subtract_outside_above_jy"].default == PeelingConfig.subtract_above_jy
    assert resources_science().model_fields["expected_false_variables"].default == \
        VariabilityConfig.expected_false_variables
    assert resources_science().model_fields["expected_false_new_sources_per_day"].default == \
        variability.EXPECTED_FALSE_NEW_SOURCES_PER_DAY
    assert resources_science().model_fields["new_source_images"].default == variability.NEW_SOURCE_IMAGES
    # peeling's levels meet at the image's edge, which the imaging settings place
    assert ImagingResource().half_width_deg == pytest.approx(PeelingConfig.image_half_width_deg, abs=0.01)
    wide = ImagingResource(size=3000, cell_arcsec=6.0)
    assert CalibrationResource().stage(tmp_path, tmp_path, wide.half_width_deg).config.peeling.image_half_width_deg == 2.5


def resources_science():
    from resources.science import ScienceResource

    return ScienceResource


def test_a_bad_value_stops_the_start_naming_the_option(tmp_path, capsys):
    base = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as stop:
        main([*base, "--missing-calibration", "wiat"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--missing-calibration" in err and "'fail', 'wait'" in err
    with pytest.raises(SystemExit) as stop:
        main([*base, "--image-size", "big"])
    assert stop.value.code == 2 and "--image-size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["--output-dir", str(tmp_path / "out")])
    assert stop.value.code == 2 and "--input-dir is required" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pipeline": {"input_dir": "/i", "output_dir": "/o"},
                                   "calibration": {"missing_policy": "wiat"}}))
    with pytest.raises(SettingsError, match=r"--missing-calibration \(calibration.missing_policy\): 'wiat' .*"
                                            r"allowed: fail, wait"):
        Settings.read(bad)
    with pytest.raises(SystemExit) as stop:
        main(["--settings", str(bad)])
    assert stop.value.code == 2 and "allowed: fail, wait" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="unknown setting 'imgae_size'"):
        Settings.parse({"input_dir": "/i", "output_dir": "/o", "imgae_size": 5})
    # the daemon's code location refuses it the same way
    load = subprocess.run([sys.executable, "-c", "from dsa_assets.definitions import defs"],
                          env={**os.environ, "DSA110_SETTINGS": str(bad)}, capture_output=True, text=True)
    assert load.returncode != 0 and "--missing-calibration" in load.stderr and "allowed: fail, wait" in load.stderr
    unset = subprocess.run([sys.executable, "-c", "from dsa_assets.definitions import defs"],
                           env={k: v for k, v in os.environ.items() if k != "DSA110_SETTINGS"},
                           capture_output=True, text=True)
    assert unset.returncode != 0 and "DSA110_SETTINGS is not set" in unset.stderr


def test_the_code_location_reads_the_settings_file_the_command_line_writes(tmp_path):
    path = tmp_path / "settings.yaml"
    subprocess.run([sys.executable, "-m", "dsa_assets.service.cli", "--input-dir", str(tmp_path / "in"),
                    "--output-dir", str(tmp_path / "out"), "--image-size", "1024", "--cell-arcsec", "12",
                    "--imager", "tclean", "--enable-mosaic-creation", "--write-settings", str(path)], check=True)
    code = ("from dsa_assets.definitions import defs; r = defs.resources['imaging']; "
            "print(r.size, r.cell_arcsec, r.imager, defs.resources['pipeline'].input_dir, "
            "sorted(s.name for s in defs.sensors))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DSA110_SETTINGS": str(path)},
                         capture_output=True, text=True, check=True).stdout.split(maxsplit=4)
    assert out[:4] == ["1024", "12.0", "tclean", str(tmp_path / "in")]
    assert "hourly_products_sensor" in out[4]


def test_settings_changed_after_construction_reach_the_runs(tmp_path):
    """Dagster runs a resource with the values it was constructed with: paths made absolute
    and the --once overrides must be built in, not copied over."""
    import dagster as dg

    @dg.asset
    def probe(pipeline: PipelineResource) -> str:
        return pipeline.output_dir

    settings = Settings(input_dir="in", output_dir="out").with_absolute_paths(tmp_path)
    result = dg.materialize([probe], resources=settings.resources())
    assert result.output_for_node("probe") == str(tmp_path / "out")
    changed = settings.replace(pipeline={"output_dir": str(tmp_path / "elsewhere")})
    assert dg.materialize([probe], resources=changed.resources()).output_for_node("probe") == str(tmp_path / "elsewhere")
