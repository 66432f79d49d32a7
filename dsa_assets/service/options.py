"""``dsa110-stream``'s options, generated from the settings' declarations: one option per
field (its flag, type, choices and help from the field), grouped by section. Nothing here
restates a default or a choice: :mod:`resources.settings` is the one place they are declared."""

from __future__ import annotations

import argparse
from pathlib import Path

from dsa_assets.exceptions import SettingsError
from resources.options import OptionSpec
from resources.settings import SECTIONS, Settings, all_option_specs

GROUP_TITLES = {
    "pipeline": "paths and ingest",
    "calibration": "calibration",
    "imaging": "imaging",
    "science": "photometry, mosaics and variability",
    "alerts": "alerts",
    "retention": "retention (policies: forever, until_downstream, budget, or a duration such as 36h or 7d)",
    "service": "service",
}


UNIT_METAVARS = {"s": "SECONDS", "gb": "GB", "deg": "DEG", "jy": "JY", "hours": "HOURS", "arcsec": "ARCSEC",
                 "wavelengths": "WAVELENGTHS", "dir": "DIR", "db": "PATH_OR_URL", "port": "PORT"}
"""A setting's unit is the last word of its name: the metavar says it."""


def _metavar(spec: OptionSpec) -> str | None:
    if spec.metavar or spec.choices:
        return spec.metavar
    unit = UNIT_METAVARS.get(spec.name.rsplit("_", 1)[-1])
    return unit or ("PATH" if spec.path else {int: "N", float: "NUMBER"}.get(spec.type, "TEXT"))


def _help(spec: OptionSpec) -> str:
    text = (spec.help or spec.name).replace("%", "%%")  # argparse formats help with %
    if spec.type is bool or spec.required:
        return text
    if spec.default in ("", None):
        return text
    return f"{text} (default {spec.default})"


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting. Options not given stay out of the namespace (defaults live in
    the settings model), so a settings file can supply them."""
    groups = {name: parser.add_argument_group(GROUP_TITLES.get(name, name)) for name in SECTIONS}
    for spec in all_option_specs():
        flags = [spec.flag, *spec.aliases]
        common = {"dest": spec.dest, "default": argparse.SUPPRESS, "help": _help(spec)}
        if spec.type is bool:
            # a switch turns its setting away from the default (--enable-x on, --no-x off)
            action = "store_false" if spec.default else "store_true"
            groups[spec.section].add_argument(*flags, action=action, **common)
            continue
        groups[spec.section].add_argument(*flags, type=spec.type, choices=spec.choices,
                                          metavar=_metavar(spec), **common)


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                       base: Settings | None = None) -> Settings:
    """The settings the options give, over ``base`` (a settings file) if any; path options made
    absolute. A missing or bad setting ends the program through ``parser.error`` (exit 2) with
    the option named."""
    data: dict[str, dict] = {name: {} for name in SECTIONS}
    if base is not None:
        data = {name: getattr(base, name).model_dump() for name in SECTIONS}
    for key, value in vars(args).items():
        section, _, field = key.partition(".")
        if section in SECTIONS and field:
            data[section][field] = value
    for spec in all_option_specs():
        if spec.required and data[spec.section].get(spec.name) in (None, ""):
            parser.error(f"{spec.flag} is required (or --settings FILE holding it)")
    try:
        return Settings.parse(data, source="options").with_absolute_paths()
    except SettingsError as exc:
        parser.error(str(exc))


def read_settings_file(path: Path, parser: argparse.ArgumentParser) -> Settings:
    try:
        return Settings.read(path)
    except SettingsError as exc:
        parser.error(str(exc))
