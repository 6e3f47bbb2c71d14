"""How long `make test` and `make quickstart` take from a fresh clone, and
what they print: the README's figures for both commands come from here.

Usage (from the repository root)::

    python benchmarks/fresh_clone.py test         # bash .ci/run (~10 min)
    python benchmarks/fresh_clone.py quickstart   # make quickstart (~6 min)
    python benchmarks/fresh_clone.py test --no-shared   # without fixtures

The committed revision ``--rev`` (default ``HEAD``; uncommitted changes are
not in a clone) is cloned beside this checkout, where ``../shared`` (the
official-code fixtures the tests read) is found as CI finds it; with
``--no-shared`` it is cloned into a temporary folder instead, where the
tests that need the fixtures are skipped. In the clone, ``make install``
(creating ``.venv``) runs first and is timed on its own, then the command
itself: ``bash .ci/run`` (which runs ``make test``) or ``make quickstart``.
The clone is removed afterwards unless ``--keep``.

Writes ``benchmarks/results/fresh_clone_<target>.md`` (``..._no_shared``
with ``--no-shared``): the machine, the date, the commit, both times, the
exit codes, the summary lines (the pytest counts, or the quickstart's
table and result lines) and the end of the output.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402

COMMANDS = {
    "test": ["bash", ".ci/run"],
    "quickstart": ["make", "quickstart"],
}
TAIL_LINES = 30


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(COMMANDS))
    parser.add_argument("--rev", default="HEAD",
                        help="committed revision to clone (default: HEAD)")
    parser.add_argument("--no-shared", action="store_true",
                        help="clone where ../shared is missing (the tests "
                        "that need the official fixtures are skipped)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the clone")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"),
                        help="where the report goes (default: %(default)s)")
    args = parser.parse_args(argv)
    args.commit = bm.commit_of(args.rev)
    if args.commit is None:
        parser.error(f"--rev: {args.rev} names no commit of {bm.REPO}")
    bm.output_folder(parser, args.out_dir)
    return args


def summary_lines(target, output):
    """The lines of ``output`` that say what a run gave.

    For ``test``: pytest's final count lines; for ``quickstart``: the
    result table's rows and the lines of its end (``Done in``, the
    SI-SNRi lines).

    Example
    -------
    >>> out = "....\\n680 passed, 1 skipped in 400.1s (0:06:40)\\n"
    >>> summary_lines("test", out)
    ['680 passed, 1 skipped in 400.1s (0:06:40)']
    >>> summary_lines("quickstart", "x\\n| a | 1 |\\nDone in 4.0 min.\\n")
    ['| a | 1 |', 'Done in 4.0 min.']
    """
    if target == "test":
        pattern = re.compile(r"^=*\s*\d+ (passed|failed|error)")
    else:
        pattern = re.compile(r"^(\||Done in|\s+test-set mean|\s+example)")
    return [line.strip().strip("=").strip() if target == "test"
            else line.rstrip()
            for line in output.splitlines() if pattern.match(line)]


def run_timed(cmd, cwd):
    """Runs ``cmd`` in ``cwd``; returns (exit code, seconds, output)."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, time.monotonic() - start, proc.stdout


def clone(args):
    """Clones ``args.commit``; returns the clone's folder."""
    if args.no_shared:
        parent = tempfile.mkdtemp(prefix="mossformer-fresh-")
    else:
        parent = os.path.dirname(bm.REPO)
    folder = os.path.join(parent, f"fresh-clone-{args.target}-{os.getpid()}")
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", bm.REPO,
                    folder], check=True)
    subprocess.run(["git", "-C", folder, "checkout", "--quiet",
                    args.commit], check=True)
    return folder


def write_markdown(path, args, started, install, run, shared):
    """The report: ``install`` and ``run`` are ``run_timed`` results."""
    machine = bm.machine_description()
    command = " ".join(COMMANDS[args.target])
    total = install[1] + run[1]
    lines = [
        f"# Fresh clone: `{command}`",
        "",
        f"- machine: {machine['cpu']} ({machine['isa']}), "
        f"{machine['cores']} cores",
        f"- date: {started:%Y-%m-%dT%H:%M} to "
        f"{datetime.datetime.now():%H:%M}",
        f"- commit: `{args.commit[:12]}` (a fresh clone; "
        f"`../shared` {'present' if shared else 'absent'})",
        "- command: `python benchmarks/fresh_clone.py "
        + " ".join(sys.argv[1:]) + "`",
        f"- `make install` (creating `.venv`): {install[1] / 60:.1f} min, "
        f"exit code {install[0]}",
        f"- `{command}`: {run[1] / 60:.1f} min, exit code {run[0]}",
        f"- in all: {total / 60:.1f} min",
        "",
        "## Summary lines",
        "",
        "```",
        *(summary_lines(args.target, run[2]) or ["(none found)"]),
        "```",
        "",
        f"## The last {TAIL_LINES} lines of the output",
        "",
        "```",
        *run[2].rstrip().splitlines()[-TAIL_LINES:],
        "```",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    """Clones, installs, runs and reports; returns the run's exit code."""
    args = parse_args(argv)
    started = datetime.datetime.now()
    folder = clone(args)
    shared = os.path.isdir(os.path.join(os.path.dirname(folder), "shared"))
    print(f"cloned {args.commit[:12]} into {folder}", flush=True)
    try:
        install = run_timed(["make", "install"], folder)
        print(f"make install: {install[1] / 60:.1f} min, exit code "
              f"{install[0]}", flush=True)
        if install[0] != 0:
            print(install[2][-4000:], file=sys.stderr)
            run = (None, 0.0, "")
        else:
            run = run_timed(COMMANDS[args.target], folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder if not args.no_shared
                          else os.path.dirname(folder), ignore_errors=True)
    name = f"fresh_clone_{args.target}" + ("_no_shared" if args.no_shared
                                           else "")
    path = os.path.join(args.out_dir, name + ".md")
    write_markdown(path, args, started, install, run, shared)
    for line in summary_lines(args.target, run[2]):
        print(line)
    print(f"{run[1] / 60:.1f} min (+ {install[1] / 60:.1f} min install); "
          f"wrote {path}")
    return run[0] if run[0] is not None else install[0]


if __name__ == "__main__":
    sys.exit(main())
