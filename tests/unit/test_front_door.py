"""Bad invocations of the command-line entry points: one line naming the option, the value and
what is wrong, exit status 2, and nothing created or started (the README's table lists these)."""

from __future__ import annotations

import pytest

from dsa_assets import cli as query_cli
from dsa_assets.service import cli as stream_cli

CATALOGUE_HEADER = "name,ra_deg,dec_deg,flux_jy\n"


@pytest.fixture
def places(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dupes.csv").write_text(CATALOGUE_HEADER + "S1,10,20,1\nS1,11,21,1\n")
    return tmp_path


def stream_cases(t):
    ok = ["--input-dir", str(t / "in"), "--output-dir", str(t / "out")]
    return {
        "input is a file": (["--input-dir", str(t / "a_file"), "--output-dir", str(t / "out")],
                            f"--input-dir {t / 'a_file'}: not a directory"),
        "input mistyped": (["--input-dir", str(t / "inn"), "--output-dir", str(t / "out")],
                           f"--input-dir {t / 'inn'}: no such directory (--create-input-dir creates it)"),
        "output is a file": (["--input-dir", str(t / "in"), "--output-dir", str(t / "a_file")],
                             f"--output-dir {t / 'a_file'}: not a directory"),
        "output under a file": (["--input-dir", str(t / "in"), "--output-dir", str(t / "a_file" / "out")],
                                f"--output-dir {t / 'a_file' / 'out'}: cannot be created ({t / 'a_file'} is a file)"),
        "catalogue missing": ([*ok, "--reference-catalogue", str(t / "sky.csv")],
                              f"--reference-catalogue {t / 'sky.csv'}: No such file or directory"),
        "catalogue with a repeated name": ([*ok, "--reference-catalogue", str(t / "dupes.csv")],
                                           "1 bad row(s): line 3: name 'S1' repeats line 2"),
        "choice mistyped": ([*ok, "--missing-calibration", "wiat"],
                            "argument --missing-calibration: invalid choice: 'wiat' (choose from 'fail', 'wait')"),
        "not a number": ([*ok, "--image-size", "big"], "argument --image-size: invalid int value: 'big'"),
        "settings file missing": (["--settings", str(t / "nope.yaml")],
                                  f"settings file {t / 'nope.yaml'}: No such file or directory"),
        "input missing": (["--output-dir", str(t / "out")], "--input-dir is required"),
    }


CASES = list(stream_cases(__import__("pathlib").Path("/t")))


@pytest.mark.parametrize("case", CASES)
def test_dsa110_stream_refuses_a_bad_invocation(case, places, capsys):
    argv, message = stream_cases(places)[case]
    try:
        status = stream_cli.main([*argv, "--once"])
    except SystemExit as stop:  # argparse's own refusals
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert message in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    assert not (places / "inn").exists(), "a mistyped input directory is never created"
    assert not (places / "out").exists(), "nothing created, nothing started"


def test_readers_never_create_a_database(places, capsys):
    missing = places / "products.sqlite3"
    for argv in (["lightcurve", "--products-db", str(missing), "--source", "S1"],
                 ["variables", "--products-db", str(missing)]):
        assert query_cli.main(argv) == 2
        assert f"dsa110: error: --products-db {missing}: no products database there" in capsys.readouterr().err
    assert not missing.exists()


def test_once_says_what_it_did_even_when_nothing(places, capsys):
    status = stream_cli.main(["--input-dir", str(places / "new"), "--create-input-dir", "--output-dir",
                              str(places / "out"), "--once"])
    out = capsys.readouterr().out
    assert status == 0 and (places / "new").is_dir()
    assert "nothing to process: no complete observation; 0 file(s) registered" in out
    assert "0 observation(s): 0 converted, 0 calibrated, 0 imaged, 0 failed" in out
