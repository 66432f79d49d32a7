"""StreamingWorker: runs the platform for one deployment, with or without its long-lived services.

``run()`` prepares the Dagster instance directory (``dagster.yaml``), recovers from a crash
(queue rows stuck in processing go back to pending, half-published products are swept),
then starts the Dagster daemon (sensors, run queue, retries) and, unless disabled, the
webserver, as child processes with the deployment's environment, and stops them cleanly on
SIGTERM/SIGINT. ``run_once()`` processes whatever is in the input directory now, in this
process, recording every materialization in the same instance, and returns.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources as _resources
from pathlib import Path

from .. import casa_env, fsutil, partitions
from ..constants import GROUP_TOLERANCE_S, INCOMPLETE_GROUP_TIMEOUT_S, N_SUBBANDS
from ..stages.imaging import ImagingConfig
from .queue import SubbandQueue
from .scanner import scan_directory

log = logging.getLogger(__name__)


AFTER_CONVERSION = ("calibration_tables", "calibrated_ms", "image")
"""The observation job's assets downstream of the Measurement Set."""


@dataclass
class WorkerConfig:
    """One deployment's settings (the options of ``dsa110-stream``)."""

    input_dir: Path
    output_dir: Path
    scratch_dir: Path | None = None
    queue_db: Path | None = None
    registry_db: str | None = None
    """Products database: SQLAlchemy URL or SQLite path (default under the output dir)."""
    dagster_home: Path | None = None
    """Dagster instance directory (default ``<output_dir>/dagster_home``)."""
    enable_calibration_solving: bool = False
    calibration_validity_h: float = 6.0
    missing_calibration: str = "fail"
    rfi_flagger: str = "aoflagger"
    reference_catalogue: Path | None = None
    mosaic_observations: int = 12
    mosaic_timeout_s: float = 1800.0
    enable_photometry: bool = False
    enable_mosaic_creation: bool = False
    webserver: bool = True
    host: str = "127.0.0.1"
    port: int = 3000
    log_level: str = "INFO"
    incomplete_timeout_s: float = INCOMPLETE_GROUP_TIMEOUT_S
    incomplete_policy: str = "convert_partial"
    group_tolerance_s: float = GROUP_TOLERANCE_S
    expected_subbands: int = N_SUBBANDS
    stable_s: float = 5.0
    metrics_port: int = 0
    """Serve Prometheus metrics on this port (0: off)."""
    disk_warn_gb: float = 10.0
    disk_pause_gb: float = 2.0
    imager: str = ImagingConfig.imager
    image_size: int = ImagingConfig.size
    """Image width and height (pixels)."""
    cell_arcsec: float = ImagingConfig.cell_arcsec
    """Pixel size (arcsec)."""

    def __post_init__(self):
        self.input_dir = Path(self.input_dir).resolve()
        self.output_dir = Path(self.output_dir).resolve()
        self.scratch_dir = Path(self.scratch_dir).resolve() if self.scratch_dir else self.output_dir / "scratch"
        self.queue_db = Path(self.queue_db).resolve() if self.queue_db else self.output_dir / "state" / "queue.sqlite3"
        self.registry_db = self.registry_db or str(self.output_dir / "state" / "products.sqlite3")
        self.dagster_home = Path(self.dagster_home).resolve() if self.dagster_home else self.output_dir / "dagster_home"
        if self.reference_catalogue:
            self.reference_catalogue = Path(self.reference_catalogue).resolve()

    def environment(self) -> dict[str, str]:
        """Variables the Dagster processes read (see ``dsa_assets.definitions``)."""
        return {
            "DAGSTER_HOME": str(self.dagster_home),
            "DSA110_INPUT_DIR": str(self.input_dir),
            "DSA110_OUTPUT_DIR": str(self.output_dir),
            "DSA110_SCRATCH_DIR": str(self.scratch_dir),
            "DSA110_QUEUE_DB": str(self.queue_db),
            "DSA110_PRODUCTS_DB": str(self.registry_db),
            "DSA110_INCOMPLETE_POLICY": self.incomplete_policy,
            "DSA110_INCOMPLETE_TIMEOUT_S": str(self.incomplete_timeout_s),
            "DSA110_STABLE_S": str(self.stable_s),
            "DSA110_ENABLE_CALIBRATION_SOLVING": str(int(self.enable_calibration_solving)),
            "DSA110_CALIBRATION_VALIDITY_H": str(self.calibration_validity_h),
            "DSA110_MISSING_CALIBRATION": self.missing_calibration,
            "DSA110_RFI_FLAGGER": self.rfi_flagger,
            "DSA110_REFERENCE_CATALOGUE": str(self.reference_catalogue or ""),
            "DSA110_MOSAIC_OBSERVATIONS": str(self.mosaic_observations),
            "DSA110_MOSAIC_TIMEOUT_S": str(self.mosaic_timeout_s),
            "DSA110_ENABLE_PHOTOMETRY": str(int(self.enable_photometry)),
            "DSA110_ENABLE_MOSAIC_CREATION": str(int(self.enable_mosaic_creation)),
            "DSA110_DISK_WARN_GB": str(self.disk_warn_gb),
            "DSA110_DISK_PAUSE_GB": str(self.disk_pause_gb),
            "DSA110_IMAGER": self.imager,
            "DSA110_IMAGE_SIZE": str(self.image_size),
            "DSA110_CELL_ARCSEC": str(self.cell_arcsec),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "DSA110_LOG_FILE": str(self.output_dir / "state" / "logs" / "dsa110.jsonl"),
        }

    @property
    def metrics_dir(self) -> Path:
        """Where every process of the deployment writes its metric samples."""
        return self.output_dir / "state" / "metrics"

    def pipeline_resource(self):
        from resources.pipeline import PipelineResource

        return PipelineResource(
            input_dir=str(self.input_dir),
            output_dir=str(self.output_dir),
            scratch_dir=str(self.scratch_dir),
            queue_db=str(self.queue_db),
            products_db=str(self.registry_db),
            expected_subbands=self.expected_subbands,
            group_tolerance_s=self.group_tolerance_s,
            stable_s=self.stable_s,
            incomplete_timeout_s=self.incomplete_timeout_s,
            incomplete_policy=self.incomplete_policy,
            disk_warn_gb=self.disk_warn_gb,
            disk_pause_gb=self.disk_pause_gb,
        )


    def science_resource(self):
        from resources.science import ScienceResource

        return ScienceResource(reference_catalogue=str(self.reference_catalogue or ""),
                               mosaic_inputs=self.mosaic_observations, mosaic_timeout_s=self.mosaic_timeout_s)

    def definitions(self):
        from resources.imaging import ImagingResource

        from ..definitions import build_definitions

        return build_definitions(self.pipeline_resource(),
                                 ImagingResource(imager=self.imager, size=self.image_size, cell_arcsec=self.cell_arcsec),
                                 calibration=self.calibration_resource(),
                                 science=self.science_resource(), enable_photometry=self.enable_photometry,
                                 enable_mosaics=self.enable_mosaic_creation)

    def calibration_resource(self):
        from resources.calibration import CalibrationResource

        return CalibrationResource(
            enable_solving=self.enable_calibration_solving,
            validity_hours=self.calibration_validity_h,
            missing_policy=self.missing_calibration,
            rfi_flagger=self.rfi_flagger,
            reference_catalogue=str(self.reference_catalogue or ""),
        )


def _newer(instance, asset: str, than: str) -> bool:
    """Whether ``asset`` was materialized after ``than`` last was (or ``than`` never was)."""
    import dagster as dg

    latest = {k: instance.get_latest_materialization_event(dg.AssetKey(k)) for k in (asset, than)}
    return latest[asset] is not None and (latest[than] is None or latest[asset].timestamp > latest[than].timestamp)


def instance_config_template() -> Path:
    """The packaged local-instance ``dagster.yaml``."""
    return Path(str(_resources.files("dsa_assets") / "data" / "dagster.yaml"))


class StreamingWorker:
    """Runs the platform for one ``WorkerConfig``."""

    def __init__(self, config: WorkerConfig, queue: SubbandQueue | None = None):
        self.config = config
        self.queue = queue or SubbandQueue(
            config.queue_db, expected_subbands=config.expected_subbands, tolerance_s=config.group_tolerance_s
        )
        self._children: list[subprocess.Popen] = []
        self._stopping = False

    # -- shared set-up --------------------------------------------------------------------
    def prepare(self) -> None:
        """Create directories and the instance config; recover what a crash left behind."""
        cfg = self.config
        for d in (cfg.input_dir, cfg.output_dir, cfg.scratch_dir, cfg.dagster_home):
            d.mkdir(parents=True, exist_ok=True)
        target = cfg.dagster_home / "dagster.yaml"
        template = instance_config_template()
        if not target.exists() or target.read_text() != template.read_text():
            shutil.copyfile(template, target)
        os.environ.update(cfg.environment())
        casa_env.configure()
        # samples of processes from a previous start describe dead processes: start afresh
        shutil.rmtree(cfg.metrics_dir, ignore_errors=True)
        cfg.metrics_dir.mkdir(parents=True, exist_ok=True)
        requeued = self.queue.requeue_stuck()
        if requeued:
            log.warning("re-queued %d observation(s) left processing by a crash: %s", len(requeued), requeued)
        from ..stages.imaging import ImagingStage
        from ..stages.mosaic import MosaicConfig, MosaicStage

        removed = cfg.pipeline_resource().conversion_stage().cleanup()
        removed += cfg.calibration_resource().stage(cfg.output_dir, cfg.scratch_dir).cleanup()
        removed += ImagingStage(ImagingConfig(output_dir=cfg.output_dir, scratch_dir=cfg.scratch_dir)).cleanup()
        removed += MosaicStage(MosaicConfig(output_dir=cfg.output_dir, scratch_dir=cfg.scratch_dir)).cleanup()
        removed += fsutil.sweep_scratch(cfg.scratch_dir, "variability-*", "crosscheck-*")
        if removed:
            log.warning("removed %d partial product(s) left by a crash", len(removed))

    # -- long-running mode ----------------------------------------------------------------
    def command(self) -> list[list[str]]:
        """The service command lines (pure; tested without running them)."""
        bin_dir = Path(sys.executable).parent
        target = ["-m", "dsa_assets.definitions", "-a", "defs"]
        if self.config.webserver:
            return [[str(bin_dir / "dagster"), "dev", *target, "-h", self.config.host, "-p", str(self.config.port),
                     "--log-level", self.config.log_level.lower()]]
        return [[str(bin_dir / "dagster-daemon"), "run", *target, "--log-level", self.config.log_level.lower()]]

    def start_metrics(self) -> None:
        """Serve ``/metrics`` if a port is configured."""
        if self.config.metrics_port:
            from .. import metrics

            metrics.serve(self.config.metrics_port, self.queue,
                          {"output": self.config.output_dir, "scratch": self.config.scratch_dir},
                          host=self.config.host)
            log.info("metrics on http://%s:%d/metrics", self.config.host, self.config.metrics_port)

    def run(self) -> int:
        """Start the services and block until they exit or SIGTERM/SIGINT; returns an exit code."""
        self.prepare()
        self.start_metrics()
        env = {**os.environ, **self.config.environment()}
        for argv in self.command():
            log.info("starting %s", " ".join(argv))
            self._children.append(subprocess.Popen(argv, env=env, start_new_session=True))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            codes = [child.wait() for child in self._children]
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0 if self._stopping else max(codes, default=0)

    def _on_signal(self, signum, _frame) -> None:
        log.info("signal %d: stopping services", signum)
        self.stop()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Ask the services to stop (SIGTERM to their process groups), then kill stragglers."""
        self._stopping = True
        for child in self._children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self._children:
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

    # -- one-shot mode --------------------------------------------------------------------
    def run_once(self) -> dict[str, list[str]]:
        """Register everything in the input directory, then, in this process and against the
        deployment's Dagster instance: run the observation job for every window holding an
        observation ready to convert (complete, or incomplete past the timeout), and only the
        missing steps after conversion for windows whose Measurement Sets exist (a run
        interrupted while calibrating, imaging or measuring); mosaic the hours that gained an
        image or lack a mosaic; recompute variability if photometry changed since it last ran.
        Returns window -> observations."""
        import dagster as dg

        from sensors.hourly_products import MOSAIC_JOB, VARIABILITY_JOB, hours_ready

        from .observations import is_stale

        self.prepare()
        scan_directory(self.config.input_dir, self.queue, stable_s=self.config.stable_s)
        now = time.time()
        convert: dict[str, list[str]] = {}
        for group in self.queue.groups("pending"):
            if group.n_subbands >= self.queue.expected_subbands or is_stale(group, self.config.incomplete_timeout_s, now):
                convert.setdefault(partitions.window_key(group.start), []).append(group.group_id)
        defs = self.config.definitions()
        job = defs.resolve_job_def("observation_job")
        after_conversion = AFTER_CONVERSION + (("photometry",) if self.config.enable_photometry else ())
        with dg.DagsterInstance.get() as instance:
            done = {k: instance.get_materialized_partitions(dg.AssetKey(k)) for k in after_conversion}
            resume: dict[str, list[str]] = {}
            for group in self.queue.groups("completed"):
                window = partitions.window_key(group.start)
                if window not in convert and any(window not in done[k] for k in after_conversion):
                    resume.setdefault(window, []).append(group.group_id)
            for window in sorted(set(convert) | set(resume)):
                selection = None if window in convert else [
                    dg.AssetKey(k) for k in after_conversion if window not in done[k]]
                result = job.execute_in_process(
                    instance=instance, partition_key=window, tags={"dsa110/window": window},
                    asset_selection=selection, raise_on_error=False,
                )
                log.info("window %s: %s%s", window, "materialized" if result.success else "failed",
                         "" if selection is None else " (after conversion)")
            science = self.config.science_resource()
            if self.config.enable_mosaic_creation:
                # one-shot: an hour is mosaicked with what it has, again only if it gained an image
                imaged = instance.get_materialized_partitions(dg.AssetKey("image"))
                ready, _ = hours_ready(imaged, science.mosaic_inputs, 0.0, float("inf"), {})
                touched = {partitions.hour_key(partitions.window_bounds(w)[0]) for w in set(convert) | set(resume)}
                measured = instance.get_materialized_partitions(dg.AssetKey("mosaic_photometry"))
                for hour in sorted(h for h in ready if h in touched or h not in measured):
                    result = defs.resolve_job_def(MOSAIC_JOB).execute_in_process(
                        instance=instance, partition_key=hour, raise_on_error=False)
                    log.info("mosaic %s: %s", hour, "materialized" if result.success else "failed")
            if self.config.enable_photometry and (convert or resume or _newer(instance, "photometry", "variability")):
                result = defs.resolve_job_def(VARIABILITY_JOB).execute_in_process(instance=instance, raise_on_error=False)
                log.info("variability: %s", "materialized" if result.success else "failed")
        return {**resume, **convert}
