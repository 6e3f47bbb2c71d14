"""Argument checks of the benchmark scripts (nothing is timed here).

A bad value must stop the script at once with an argparse error, not hang
(``--jobs 0``), crash after minutes of work (``--threads 0``,
``--repeats 0``) or end in a traceback (``--seconds abc``); ``speed.py
--quick`` must not replace the full run's report.
"""

import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")


def load(name):
    """A benchmark script as a module."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(BENCHMARKS, name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script, argv",
    [
        ("pruning_experiment", ["--jobs", "0"]),
        ("pruning_experiment", ["--threads", "0"]),
        ("speed", ["--seconds", "abc"]),
        ("speed", ["--seconds", "0"]),
        ("speed", ["--seconds", "4,-1"]),
        ("speed", ["--threads", "0"]),
        ("speed", ["--repeats", "0"]),
        ("speed", ["--models", ","]),
        ("matmul_floor", ["--repeats", "0"]),
        ("matmul_floor", ["--threads", "0"]),
        ("matmul_floor", ["--seconds", "-1"]),
        ("matmul_floor", ["--models", ","]),
    ],
)
def test_bad_values_are_argparse_errors(script, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        load(script).parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_good_values_still_parse():
    assert load("pruning_experiment").parse_args([]).jobs == 2
    assert load("speed").parse_args(["--seconds", "4,16"]).seconds == [4, 16]
    assert load("matmul_floor").parse_args([]).repeats == 5


def test_speed_quick_does_not_replace_the_full_report():
    speed = load("speed")
    assert speed.parse_args([]).name == "speed"
    assert speed.parse_args(["--quick"]).name != "speed"
    assert speed.parse_args(["--quick", "--name", "mine"]).name == "mine"
