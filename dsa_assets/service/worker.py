"""StreamingWorker: runs the platform for one deployment, with or without its long-lived services.

``run()`` prepares the deployment (the Dagster instance directory and its ``dagster.yaml``, the
settings file the code location reads), recovers from a crash (queue rows stuck in processing
go back to pending, half-published products are swept), then starts the Dagster daemon
(sensors, run queue, retries) and, unless disabled, the webserver, as child processes, and stops
them cleanly on SIGTERM/SIGINT. ``run_once()`` evaluates the same sensors once and executes the
runs they request in this process, against the same instance, then returns: there is one
scheduling rule, the sensors'.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources as _resources
from pathlib import Path

from resources.settings import SETTINGS_ENV, Settings
from sensors.alerts import failure_reasons
from sensors.late_calibration import steps_after_conversion

from .. import casa_env, fsutil, processes
from ..logs import LOG_FILE_ENV
from ..streaming.queue import COMPLETED, SubbandQueue

log = logging.getLogger(__name__)

WorkerConfig = Settings

PROCESS_TAG = "dsa110/process"
"""Tag of a run executed inside ``--once``: the process (``host:pid``) that ran it."""
STOP_GRACE_S = 10.0
"""Seconds the services get to stop on SIGTERM before they are killed: well inside systemd's
stop timeout (and the 15 s the operators asked for), however the signal is delivered."""


def service_environment(settings: Settings) -> dict[str, str]:
    """What the Dagster processes of a deployment need in their environment: the instance, the
    settings file, and where runs put metric samples and log lines."""
    return {
        "DAGSTER_HOME": str(settings.dagster_home),
        SETTINGS_ENV: str(settings.settings_path),
        "PROMETHEUS_MULTIPROC_DIR": str(settings.metrics_dir),
        LOG_FILE_ENV: str(settings.log_file),
    }


@dataclass
class OnceReport:
    """What one ``--once`` pass did: window -> observations run, and each failed run's reason."""

    windows: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    waiting: str | None = None
    """Why the arrival sensor requested nothing, when it did not."""
    started_unix: float = field(default_factory=time.time)

    def add(self, outcome: tuple[str, str | None]) -> str | None:
        """Record a run's outcome; returns its failure (None: it succeeded)."""
        what, failure = outcome
        if failure:
            self.failures[what] = failure
        return failure


def instance_config_template() -> Path:
    """The packaged local-instance ``dagster.yaml``."""
    return Path(str(_resources.files("dsa_assets") / "data" / "dagster.yaml"))


class StreamingWorker:
    """Runs the platform for one deployment's :class:`Settings`."""

    def __init__(self, settings: Settings, queue: SubbandQueue | None = None):
        self.settings = settings
        self.queue = queue or settings.pipeline.queue()
        self._children: list[subprocess.Popen] = []
        self._stopping = False
        self._tree: list = []
        self._kill_at: float | None = None

    # -- shared set-up --------------------------------------------------------------------
    def prepare(self) -> None:
        """Create directories, the instance config and the settings file; recover what a crash
        left behind."""
        s, p = self.settings, self.settings.pipeline
        for d in (Path(p.input_dir), p.output_path, p.scratch_path, s.dagster_home):
            d.mkdir(parents=True, exist_ok=True)
        p.products()  # created (or upgraded) now: the source explorer opens it read-only
        target = s.dagster_home / "dagster.yaml"
        template = instance_config_template()
        if not target.exists() or target.read_text() != template.read_text():
            shutil.copyfile(template, target)
        s.write(s.settings_path)
        os.environ.update(service_environment(s))
        casa_env.configure()
        # samples of processes from a previous start describe dead processes: start afresh
        shutil.rmtree(s.metrics_dir, ignore_errors=True)
        s.metrics_dir.mkdir(parents=True, exist_ok=True)
        requeued = self.queue.requeue_stuck()
        if requeued:
            log.warning("re-queued %d observation(s) left processing by a crash: %s", len(requeued), requeued)
        removed = [path for stage in self._stages() for path in stage.cleanup()]
        removed += fsutil.sweep_scratch(p.scratch_path, "crosscheck-*")
        if removed:
            log.warning("removed %d partial product(s) left by a crash", len(removed))

    def _stages(self) -> list:
        """Every stage that publishes, for crash recovery."""
        from ..stages.mosaic import MosaicConfig, MosaicStage
        from ..stages.variability import VariabilityConfig, VariabilityStage

        s, p = self.settings, self.settings.pipeline
        return [p.conversion_stage(), s.calibration.stage(p.output_path, p.scratch_path),
                s.imaging.stage(p.output_path, p.scratch_path), MosaicStage(MosaicConfig(p.output_path, p.scratch_path)),
                VariabilityStage(VariabilityConfig(p.output_path, p.scratch_path))]

    # -- long-running mode ----------------------------------------------------------------
    def command(self) -> list[list[str]]:
        """The service command lines (pure; tested without running them)."""
        service = self.settings.service
        bin_dir = Path(sys.executable).parent
        target = ["-m", "dsa_assets.definitions", "-a", "defs"]
        if service.webserver:
            ui = [[str(bin_dir / "dagster"), "dev", *target, "-h", service.host, "-p", str(service.port),
                   "--log-level", service.log_level.lower()]]
            if service.explorer_port:
                ui.append([str(bin_dir / "dsa110"), "explore", "--products-db", self.settings.pipeline.products_target,
                           "--host", service.host, "--port", str(service.explorer_port)])
            return ui
        return [[str(bin_dir / "dagster-daemon"), "run", *target, "--log-level", service.log_level.lower()]]

    def start_metrics(self) -> None:
        """Serve ``/metrics`` if a port is configured."""
        service, p = self.settings.service, self.settings.pipeline
        if service.metrics_port:
            from .. import metrics

            metrics.serve(service.metrics_port, self.queue, {"output": p.output_path, "scratch": p.scratch_path},
                          host=service.host)
            log.info("metrics on http://%s:%d/metrics", service.host, service.metrics_port)

    def run(self) -> int:
        """Start the services and block until they exit or SIGTERM/SIGINT; returns an exit code.
        The signal handler only starts the stop; this loop does the waiting and the killing (a
        handler that waited on a child would wait on the lock the interrupted wait holds)."""
        self.prepare()
        self.start_metrics()
        env = {**os.environ, **service_environment(self.settings)}
        for argv in self.command():
            log.info("starting %s", " ".join(argv))
            self._children.append(subprocess.Popen(argv, env=env, start_new_session=True))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while any(child.poll() is None for child in self._children):
                if self._kill_at is not None and time.monotonic() >= self._kill_at:
                    self._kill()
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0 if self._stopping else max((child.returncode for child in self._children), default=0)

    def _on_signal(self, signum, _frame) -> None:
        log.info("signal %d: stopping services", signum)
        self.stop()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Start stopping the services: SIGTERM to each service's process tree (the daemon, the
        webserver, their code servers and run processes); ``run`` kills what is left after
        ``grace_s`` seconds. A run cut short this way is marked failed by run monitoring at the
        next start and retried (its products are replaced atomically), so a quick stop loses no
        work."""
        import psutil

        self._stopping = True
        for child in self._children:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(child.pid)
                self._tree += [root, *root.children(recursive=True)]
        for process in self._tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        self._kill_at = time.monotonic() + grace_s

    def _kill(self) -> None:
        """SIGKILL to every service process still there, and to anything started meanwhile."""
        import psutil

        for process in self._tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        self._kill_at = None

    # -- one-shot mode --------------------------------------------------------------------
    def once_settings(self) -> Settings:
        """One pass has no later tick to wait for: an incomplete hour is mosaicked with what it
        has, and the variability table follows any new photometry."""
        return self.settings.replace(science={"mosaic_timeout_s": 0.0, "variability_interval_s": 0.0},
                                     retention={"retention_interval_s": 0.0})

    def run_once(self) -> OnceReport:
        """In this process and against the deployment's Dagster instance: evaluate the arrival
        sensor (over the whole input directory) and execute the observation runs it requests;
        resume the windows whose runs a crash interrupted after conversion; run again, from
        calibration on, those that found no solution and one solved since reaches (the
        late-calibration sensor); then evaluate the hourly-products sensor (its cursor kept
        between passes in the state directory) and execute its mosaic and variability runs; then
        run the retention job. Returns what was run and what failed."""
        import dagster as dg

        from ..assets.retention import RETENTION_JOB
        from ..definitions import build_definitions

        self.prepare()
        settings = self.once_settings()
        defs = build_definitions(settings)
        cursors_path = settings.state_dir / "once_cursors.json"
        cursors = json.loads(cursors_path.read_text()) if cursors_path.exists() else {}
        report = OnceReport()
        with dg.DagsterInstance.get() as instance:
            self._fail_orphaned_runs(instance)
            resources = settings.resources()
            arrival = self._tick(defs, "subband_arrival_sensor", instance, None, resources)
            report.waiting = arrival.skip_reason.skip_message if arrival.skip_reason else None
            for event in arrival.asset_events:
                instance.report_runless_asset_event(event)
            for request in arrival.run_requests:
                report.add(self._execute(defs, instance, request, "observation_job"))
                report.windows.setdefault(request.partition_key, []).append(request.tags.get("dsa110/observation", ""))
            for window, (observations, selection) in self._unfinished_windows(defs, instance, set(report.windows)).items():
                report.add(self._execute(defs, instance, None, "observation_job", window, selection,
                                         note=" (after conversion)"))
                report.windows[window] = observations
            # windows that failed for want of a solution, now that this pass solved on a later calibrator
            for request in self._tick(defs, "late_calibration_sensor", instance, None, resources).run_requests:
                what, failure = self._execute(defs, instance, request, "observation_job", selection=request.asset_selection,
                                              note=" (a later calibrator's solution reaches it)")
                if failure:
                    report.failures[what] = failure
                else:  # its earlier failure in this pass is mended
                    report.failures.pop(what, None)
                report.windows.setdefault(request.partition_key, []).extend(
                    request.tags["dsa110/observation"].split(","))
            if any(s.name == "hourly_products_sensor" for s in defs.sensors):
                hourly = self._tick(defs, "hourly_products_sensor", instance, cursors.get("hourly_products_sensor"),
                                    resources)
                failures = [report.add(self._execute(defs, instance, r, r.job_name)) for r in hourly.run_requests]
                if not any(failures):  # a failed run is requested again by the next pass
                    cursors["hourly_products_sensor"] = hourly.cursor
                    fsutil.write_text_atomic(cursors_path, json.dumps(cursors))
            for request in self._tick(defs, "retention_sensor", instance, None, resources).run_requests:
                report.add(self._execute(defs, instance, request, RETENTION_JOB))
        return report

    @staticmethod
    def _fail_orphaned_runs(instance) -> None:
        """Mark failed the runs an earlier ``--once`` process left in progress when it died:
        no daemon watches in-process runs, and a run that seems to be running holds its
        partitions against retention."""
        import dagster as dg

        from ..assets.retention import IN_PROGRESS

        for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
            if processes.is_gone(run.tags.get(PROCESS_TAG)):
                instance.report_run_failed(run, f"the process running it ({run.tags[PROCESS_TAG]}) is gone")
                log.warning("run %s of %s: its process is gone; marked failed", run.run_id, run.job_name)

    @staticmethod
    def _tick(defs, name: str, instance, cursor: str | None, resources: dict):
        """One evaluation of a sensor of ``defs``."""
        import dagster as dg

        sensor = defs.resolve_sensor_def(name)
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
        result = sensor(context)
        if result.skip_reason:
            log.info("%s: %s", name, result.skip_reason.skip_message)
        return result

    def _execute(self, defs, instance, request, job_name: str, partition_key: str | None = None,
                 selection=None, note: str = "") -> tuple[str, str | None]:
        """Execute one run request (or a partition's ``selection`` of assets) in process: (what
        was run, why it failed or None)."""
        partition_key = request.partition_key if request else partition_key
        tags = {**(request.tags if request else {}), PROCESS_TAG: processes.this_process()}
        if request and request.run_key:
            tags["dagster/run_key"] = request.run_key
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, partition_key=partition_key, tags=tags, asset_selection=selection,
            raise_on_error=False)
        what = {"observation_job": f"window {partition_key}", "mosaic_job": f"mosaic {partition_key}"}.get(
            job_name, job_name.removesuffix("_job"))
        log.info("%s: %s%s", what, "materialized" if result.success else "failed", note)
        return what, None if result.success else failure_reasons(result.all_events) or "run failed"

    def _unfinished_windows(self, defs, instance, skip: set[str]) -> dict[str, tuple[list[str], list]]:
        """Windows (other than ``skip``) with converted observations whose later steps in the
        observation job never materialized: a run interrupted after conversion. window ->
        (observations, the asset keys to run)."""
        from .. import windows

        after = steps_after_conversion(defs.resolve_job_def("observation_job"))
        done = {k: instance.get_materialized_partitions(k) for k in after}
        unfinished: dict[str, tuple[list[str], list]] = {}
        for group in self.queue.groups(COMPLETED):
            window = windows.window_key(group.start)
            missing = [k for k in after if window not in done[k]]
            if window not in skip and missing:
                unfinished.setdefault(window, ([], missing))[0].append(group.group_id)
        return unfinished
