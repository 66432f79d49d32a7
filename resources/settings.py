"""One deployment's settings: the resources' fields plus the service's, in one model.

Every setting is declared once, as a typed field with a docstring on a resource (or on
:class:`ServiceSettings` for what only the service uses). From those declarations come the
``dsa110-stream`` options (:mod:`dsa_assets.service.options`), the settings file that the
daemon's code location reads (``DSA110_SETTINGS``, YAML, written by ``dsa110-stream``), the
Dagster resources, and through them the stage configurations.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path, PurePath
from typing import Literal

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dsa_assets import fsutil
from dsa_assets.exceptions import SettingsError

from .alerts import AlertsResource
from .calibration import CalibrationResource
from .imaging import ImagingResource
from .options import OptionSpec, option, option_specs
from .pipeline import PipelineResource
from .retention import RetentionResource
from .science import ScienceResource

SETTINGS_ENV = "DSA110_SETTINGS"
"""The one variable the Dagster processes read: the path of the settings file."""


class ServiceSettings(BaseModel):
    """How the service runs: the Dagster instance, the UI, metrics, logs and the executor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dagster_home: str = option("", path=True)
    """Dagster instance directory (default <output>/dagster_home)."""
    webserver: bool = option(True, flag="--no-webserver")
    """Serve the Dagster UI beside the daemon (--no-webserver: only the daemon)."""
    host: str = "127.0.0.1"
    """Address the webserver and the metrics endpoint listen on."""
    port: int = 3000
    """Webserver port."""
    explorer_port: int = 3001
    """Serve the source explorer (read-only pages, exports, cone search) beside the webserver on
    this port (0: not served; ``dsa110 explore`` serves it anywhere)."""
    metrics_port: int = 0
    """Serve Prometheus metrics at http://HOST:PORT/metrics (0: off)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the service and its runs."""
    log_format: Literal["text", "json"] = "text"
    """The service's log: text, or one JSON object per line."""
    executor: Literal["multiprocess", "celery"] = "multiprocess"
    """Where run steps execute: processes on this machine, or Celery workers on other machines
    (deploy/production/README.md)."""
    celery_broker: str = ""
    """Celery broker URL (executor celery), e.g. redis://broker:6379/0."""
    celery_backend: str = ""
    """Celery result backend URL (executor celery)."""


@cache
def all_option_specs() -> tuple[OptionSpec, ...]:
    """Every setting of every section (read from the declarations once per process)."""
    return tuple(spec for name, model in SECTIONS.items() for spec in option_specs(name, model))


def _section_of_field() -> dict[str, str]:
    owner: dict[str, str] = {}
    for spec in all_option_specs():
        if spec.name in owner:
            raise TypeError(f"setting {spec.name!r} is declared in both {owner[spec.name]} and {spec.section}")
        owner[spec.name] = spec.section
    return owner


class Settings(BaseModel):
    """All settings of one deployment, by section: each field is a section, and each section a
    resource the assets ask for by that name (or the service's settings). A new section is one
    field here. Built from the command line, from a settings file, or in Python with the
    fields of any section given flat: ``Settings(input_dir="in", output_dir="out", size=1024)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: PipelineResource
    calibration: CalibrationResource = Field(default_factory=CalibrationResource)
    imaging: ImagingResource = Field(default_factory=ImagingResource)
    science: ScienceResource = Field(default_factory=ScienceResource)
    alerts: AlertsResource = Field(default_factory=AlertsResource)
    retention: RetentionResource = Field(default_factory=RetentionResource)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @model_validator(mode="before")
    @classmethod
    def _route_flat_fields(cls, data):
        """Fields given by name alone go to their section."""
        if not isinstance(data, dict):
            return data
        owner = _section_of_field()
        routed: dict = {}
        for key, value in data.items():
            if key in SECTIONS:
                section = value.model_dump() if isinstance(value, BaseModel) else dict(value or {})
                routed.setdefault(key, {}).update({k: _plain(v) for k, v in section.items()})
            elif key in owner:
                routed.setdefault(owner[key], {})[key] = _plain(value)
            else:
                raise ValueError(f"unknown setting {key!r}")
        return routed

    # -- derived paths ---------------------------------------------------------------------------
    @property
    def dagster_home(self) -> Path:
        return Path(self.service.dagster_home) if self.service.dagster_home else self.pipeline.output_path / "dagster_home"

    @property
    def state_dir(self) -> Path:
        return self.pipeline.state_dir

    @property
    def settings_path(self) -> Path:
        """Where the service writes this deployment's settings file."""
        return self.state_dir / "settings.yaml"

    @property
    def metrics_dir(self) -> Path:
        """Where every process of the deployment writes its metric samples."""
        return self.state_dir / "metrics"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "dsa110.jsonl"

    def resources(self) -> dict:
        """The Dagster resources, by the names the assets ask for (their section names)."""
        return {name: getattr(self, name) for name, model in SECTIONS.items() if issubclass(model, dg.ConfigurableResource)}

    def with_absolute_paths(self, base: Path | None = None) -> Settings:
        """Path settings made absolute (relative to ``base``, default the working directory);
        SQLAlchemy URLs are left alone."""
        base = Path.cwd() if base is None else base
        update: dict[str, dict] = {}
        for spec in all_option_specs():
            value = getattr(getattr(self, spec.section), spec.name)
            if spec.path and value and "://" not in value:
                update.setdefault(spec.section, {})[spec.name] = str((base / Path(value).expanduser()).resolve())
        return self.replace(**update)

    def replace(self, **sections: dict) -> Settings:
        """These settings with some fields changed, by section:
        ``settings.replace(science={"mosaic_timeout_s": 0.0})``. Built anew, not copied: a
        Dagster resource runs with the values it was constructed with, so a ``model_copy``'s
        changes would not reach the runs."""
        data = {name: getattr(self, name).model_dump() for name in SECTIONS}
        for name, fields in sections.items():
            data[name].update(fields)
        return Settings.parse(data)

    # -- the settings file -----------------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump({name: getattr(self, name).model_dump() for name in SECTIONS}, sort_keys=False)

    def write(self, path: Path | str) -> Path:
        """Write the settings file (atomically: a reader never sees half of it)."""
        return fsutil.write_text_atomic(path, self.to_yaml())

    @classmethod
    def read(cls, path: Path | str) -> Settings:
        """Read a settings file; :class:`SettingsError` names each bad setting's option and what
        it accepts."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SettingsError(f"settings file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"settings file {path} is not YAML: {exc}") from exc
        return cls.parse(data or {}, source=f"settings file {path}")

    @classmethod
    def parse(cls, data: dict, source: str = "settings") -> Settings:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None

    @classmethod
    def from_environment(cls) -> Settings:
        """The settings file named by ``DSA110_SETTINGS``."""
        path = os.environ.get(SETTINGS_ENV)
        if not path:
            raise SettingsError(f"{SETTINGS_ENV} is not set: point it at a settings file (dsa110-stream writes "
                                "<output>/state/settings.yaml; `dsa110-stream --write-settings FILE ...` writes one "
                                "without starting anything)")
        return cls.read(path)


SECTIONS: dict[str, type[BaseModel]] = {name: f.annotation for name, f in Settings.model_fields.items()}
"""Section name -> model, in the order of the command line's help."""


def _plain(value):
    """Paths as the strings the settings hold."""
    return str(value) if isinstance(value, PurePath) else value


def _describe(error: dict) -> str:
    """One pydantic error as the option it concerns, the value and what is allowed."""
    specs = {(s.section, s.name): s for s in all_option_specs()}
    loc = tuple(str(p) for p in error["loc"])
    spec = specs.get(loc[:2]) if len(loc) >= 2 else None
    if spec is None:
        return f"{'.'.join(loc) or 'settings'}: {error['msg']}"
    if error["type"] == "missing" or (spec.required and error.get("input") is None):
        return f"{spec.flag} ({spec.dest}) is required"
    allowed = f" (allowed: {', '.join(map(str, spec.choices))})" if spec.choices else ""
    return f"{spec.flag} ({spec.dest}): {error.get('input')!r} is not valid: {error['msg']}{allowed}"
