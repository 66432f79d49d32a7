"""``dsa110-stream``: run the platform on a directory the correlator writes into."""

from __future__ import annotations

import argparse
import logging
import sys

from ..constants import INCOMPLETE_GROUP_TIMEOUT_S
from ..logs import configure_logging
from ..stages.imaging import ImagingConfig

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dsa110-stream",
        description=(
            "Watch a directory of DSA-110 subband files and turn every complete observation into "
            "Measurement Sets (and downstream products) as partitioned Dagster assets. Starts the "
            "Dagster daemon (sensors, run queue, retries) and webserver; Ctrl-C or SIGTERM stops both."
        ),
    )
    io = p.add_argument_group("paths")
    io.add_argument("--input-dir", required=True, help="directory the correlator writes *_sbNN.hdf5 files into")
    io.add_argument("--output-dir", required=True, help="root of all products (ms/, state/, dagster_home/)")
    io.add_argument("--queue-db", help="SQLite file of the subband queue (default <output>/state/queue.sqlite3)")
    io.add_argument("--scratch-dir", help="where products are written before being renamed into place "
                    "(default <output>/scratch; same filesystem as the output makes that a rename)")
    io.add_argument("--products-db", "--registry-db", dest="products_db",
                    help="products database: SQLAlchemy URL or SQLite path (default <output>/state/products.sqlite3)")
    io.add_argument("--dagster-home", help="Dagster instance directory (default <output>/dagster_home)")

    stages = p.add_argument_group("stages")
    stages.add_argument("--enable-calibration-solving", action="store_true",
                        help="solve calibration on calibrator transits (otherwise apply existing tables only)")
    stages.add_argument("--calibration-validity-hours", type=float, default=6.0, metavar="HOURS",
                        help="an observation takes the nearest valid solution at most this far away "
                             "(default %(default)s)")
    stages.add_argument("--missing-calibration", choices=("fail", "wait"), default="fail",
                        help="with no valid solution in reach: fail the partition with the reason, or wait "
                             "and retry (default %(default)s)")
    stages.add_argument("--rfi-flagger", choices=("aoflagger", "tfcrop", "rflag", "none"), default="aoflagger",
                        help="RFI flagging before calibration (default %(default)s)")
    stages.add_argument("--imager", choices=("wsclean", "tclean"), default=ImagingConfig.imager,
                        help="imager (default %(default)s)")
    stages.add_argument("--image-size", type=int, default=ImagingConfig.size, metavar="PIXELS",
                        help="image width and height (default %(default)s)")
    stages.add_argument("--cell-arcsec", type=float, default=ImagingConfig.cell_arcsec, metavar="ARCSEC",
                        help="pixel size; keep 5 or more pixels across the beam's minor axis and every baseline "
                             "on the uv grid (the image asset's pixels_sample_the_beam check says) "
                             "(default %(default)s)")
    stages.add_argument("--reference-catalogue", metavar="CSV",
                        help="catalogue of the sky (name, ra_deg, dec_deg, flux_jy, spectral_index): forced photometry "
                             "measures its sources, and those near a calibrator join the calibration model; "
                             "the simulator writes one (sky_catalogue.csv beside the subbands)")
    stages.add_argument("--enable-photometry", action="store_true",
                        help="forced photometry and source finding on every image (and mosaic), and the "
                             "variability table")
    stages.add_argument("--enable-mosaic-creation", action="store_true",
                        help="hourly mosaics, once an hour is imaged or --mosaic-timeout after its last image")
    stages.add_argument("--mosaic-observations", type=int, default=12, metavar="N",
                        help="imaged windows that complete an hour's mosaic (default %(default)s)")
    stages.add_argument("--mosaic-timeout", type=float, default=1800.0, metavar="SECONDS",
                        help="mosaic an incomplete hour this long after it ended and its last image arrived "
                             "(default %(default)s)")

    ingest = p.add_argument_group("ingest")
    ingest.add_argument("--incomplete-timeout", type=float, default=INCOMPLETE_GROUP_TIMEOUT_S, metavar="SECONDS",
                        help="how long to wait for a group's missing subbands (default %(default)s s)")
    ingest.add_argument("--incomplete-policy", choices=("convert_partial", "fail"), default="convert_partial",
                        help="after the timeout: convert with missing subbands flagged, or fail the group")
    ingest.add_argument("--stable-seconds", type=float, default=5.0,
                        help="a file must be unchanged this long before it is registered (default %(default)s)")

    ingest.add_argument("--disk-warn-gb", type=float, default=10.0,
                        help="warn when the output or scratch disk has less free space (default %(default)s GB)")
    ingest.add_argument("--disk-pause-gb", type=float, default=2.0,
                        help="request no new runs below this free space; resumes by itself (default %(default)s GB)")

    ops = p.add_argument_group("operation")
    ops.add_argument("--once", action="store_true",
                     help="process what is in the input directory now, in this process, and exit")
    ops.add_argument("--no-webserver", action="store_true", help="run only the daemon (no UI)")
    ops.add_argument("--host", default="127.0.0.1", help="webserver host (default %(default)s)")
    ops.add_argument("--port", type=int, default=3000, help="webserver port (default %(default)s)")
    ops.add_argument("--metrics-port", type=int, default=0,
                     help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
    ops.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    ops.add_argument("--log-format", default="text", choices=("text", "json"))
    return p


def config_from_args(args):
    from .worker import WorkerConfig

    return WorkerConfig(
        input_dir=args.input_dir,
        output_dir=args.output_dir,
        scratch_dir=args.scratch_dir,
        queue_db=args.queue_db,
        registry_db=args.products_db,
        dagster_home=args.dagster_home,
        enable_calibration_solving=args.enable_calibration_solving,
        calibration_validity_h=args.calibration_validity_hours,
        missing_calibration=args.missing_calibration,
        rfi_flagger=args.rfi_flagger,
        reference_catalogue=args.reference_catalogue,
        imager=args.imager,
        image_size=args.image_size,
        cell_arcsec=args.cell_arcsec,
        mosaic_observations=args.mosaic_observations,
        mosaic_timeout_s=args.mosaic_timeout,
        enable_photometry=args.enable_photometry,
        enable_mosaic_creation=args.enable_mosaic_creation,
        webserver=not args.no_webserver,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        incomplete_timeout_s=args.incomplete_timeout,
        incomplete_policy=args.incomplete_policy,
        stable_s=args.stable_seconds,
        metrics_port=args.metrics_port,
        disk_warn_gb=args.disk_warn_gb,
        disk_pause_gb=args.disk_pause_gb,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    from .worker import StreamingWorker

    config = config_from_args(args)
    worker = StreamingWorker(config)
    if args.once:
        windows = worker.run_once()
        for window, groups in sorted(windows.items()):
            print(f"{window}\t{','.join(groups)}")
        failed = worker.queue.groups("failed")
        return 1 if failed else 0
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
