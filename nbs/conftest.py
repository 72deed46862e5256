"""Collect every notebook in nbs/ as one pytest item, executed top to bottom with nbdev's own test runner.

Every cell runs, as in Jupyter's Run All with the notebook's default settings: the book has no test-skip flags
(no `#|slow`); long runs sit under `if FULL:` (chapter 00's `full_settings`), so `DDPM_BOOK_FULL=1 pytest nbs`
runs the full settings instead. A `tst_flags` entry in settings.ini is ignored here on purpose, so that a cell
the reader's Run All executes can never be skipped by the tests.

Each notebook runs in a fresh Python process, as in a fresh kernel: no notebook sees what another one imported,
registered or changed, whatever the order. On Linux the process is forked off a small server (one per pytest worker)
that has imported torch and nbdev and done nothing else, which saves each notebook their import (2-4 s); elsewhere it
is a new interpreter. The notebooks run in parallel, one per worker process (pytest-xdist;
`-n auto` in pytest.ini): `auto` means one worker per core and per 3 GB of memory, at most MAX_WORKERS (none on
one core).
Each notebook gets its share of the cores as torch threads (two notebooks at one thread each finish sooner than one
after the other at two threads: small networks do not scale to two threads, and two processes at two threads each on
two cores wait for each other). The longest notebooks are handed out first (SLOW_FIRST, from the timings printed at
the end of a run) so that none starts last. `pytest nbs -n 0` runs them one after the other.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NBS = Path(__file__).parent
MAX_WORKERS = 4  # notebooks at once with -n auto
GB_PER_WORKER = 3  # memory a notebook may hold at its peak (chapter 13's Inception network and features)
SLOW_FIRST = (  # the slowest notebooks (the summary at the end of a run lists them), started first; the rest follow
    '13_evaluation',
    '15_scale_out',
    '17_autoencoder',
    '16_webui',
    '17b_latent',
    '10b_pipeline',
    '18b_matryoshka_train',
    '14_cli',
    '08c_trainer',
)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def _memory_gb() -> float:
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume enough
        return float('inf')


def pytest_xdist_auto_num_workers(config):
    "`-n auto`: one worker per core and per GB_PER_WORKER of memory, at most MAX_WORKERS; none on one core."
    n = min(_cores(), MAX_WORKERS, int(_memory_gb() // GB_PER_WORKER))
    return n if n > 1 else 0


def worker_threads() -> int | None:
    "Torch threads for a notebook in this worker: its share of the cores; None outside a parallel run."
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '0') or 0)
    return max(1, _cores() // workers) if workers > 1 else None


def pytest_collect_file(parent, file_path):
    if (
        file_path.suffix == '.ipynb'
        and not file_path.name.startswith('_')
        and '.ipynb_checkpoints' not in file_path.parts
    ):
        return NotebookFile.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda i: rank.get(Path(str(i.path)).stem, len(rank)))  # stable: the others keep their order
    if (
        not any(isinstance(i, NotebookItem) for i in items)
        and not config.getoption('keyword')
        and not config.getoption('markexpr')
    ):
        raise pytest.UsageError(f'no notebook found to test under {NBS}: the test command must never pass on nothing')


def pytest_terminal_summary(terminalreporter):
    "After the run: the ten slowest notebooks, and the wall time they took together."
    reports = [r for k in ('passed', 'failed') for r in terminalreporter.stats.get(k, []) if r.when == 'call']
    if not reports:
        return
    terminalreporter.section('slowest notebooks')
    for r in sorted(reports, key=lambda r: -r.duration)[:10]:
        terminalreporter.write_line(f"{r.duration:7.1f} s  {r.nodeid.split('::')[0]}  {r.outcome}")
    terminalreporter.write_line(f"{sum(r.duration for r in reports):7.1f} s  all {len(reports)} notebooks together")


class NotebookFile(pytest.File):
    def collect(self):
        yield NotebookItem.from_parent(self, name=self.path.stem)


RUN_NB = """
import sys
import torch
if int(sys.argv[2]):
    torch.set_num_threads(int(sys.argv[2]))
from pathlib import Path
from nbdev.test import test_nb
ok, secs = test_nb(Path(sys.argv[1]), skip_flags=[], force_flags=[], showerr=True)  # every cell, as Run All
sys.exit(0 if ok else 1)
"""

FORK_SERVER = """
import json, os, sys, traceback
import torch  # imported once here, never used: every notebook forks off before any computation
from pathlib import Path
from nbdev.test import test_nb
for line in sys.stdin:
    nb, threads, out, err = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the notebook's own process: a fresh kernel that found torch and nbdev already imported
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the server's requests are not the notebook's input
        for fd, name in ((1, out), (2, err)):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        try:
            if threads:
                torch.set_num_threads(threads)
            ok, secs = test_nb(Path(nb), skip_flags=[], force_flags=[], showerr=True)  # every cell, as Run All
        except BaseException:
            traceback.print_exc()
            ok = False
        sys.exit(0 if ok else 1)  # exits this process only, running the notebook's atexit handlers
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class ForkServer:
    "One interpreter per pytest worker that imports torch and nbdev once and forks a fresh process per notebook."

    def __init__(self):
        self.proc = None

    def run(self, nb: Path, threads: int, env: dict) -> tuple[int, str, str]:
        "Run notebook `nb` in a process forked off the server; (exit status, stdout, stderr)."
        if self.proc is None or self.proc.poll() is not None:
            cmd = [sys.executable, '-c', FORK_SERVER]
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        with tempfile.TemporaryDirectory() as d:
            out, err = Path(d) / 'stdout', Path(d) / 'stderr'
            self.proc.stdin.write(json.dumps([str(nb), threads, str(out), str(err)]) + '\n')
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            code = int(line) if line.strip() else 1  # no answer: the server died with the notebook
            read = lambda f: f.read_text(errors='replace') if f.exists() else ''
            return code, read(out), read(err)


SERVER = ForkServer() if hasattr(os, 'fork') and sys.platform == 'linux' else None  # fork is safe here after import


class NotebookItem(pytest.Item):
    def runtest(self):
        "Run the notebook in a fresh process, as a fresh kernel would: nothing left over from another notebook."
        env = {**os.environ, 'IN_TEST': '1'}
        if SERVER is not None:
            code, out, err = SERVER.run(self.path, worker_threads() or 0, env)
        else:
            cmd = [sys.executable, '-c', RUN_NB, str(self.path), str(worker_threads() or 0)]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            code, out, err = r.returncode, r.stdout, r.stderr
        sys.stdout.write(out)
        sys.stderr.write(err)
        if code != 0:
            raise NotebookFailed(self.path.name)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookFailed):
            return f'{excinfo.value.args[0]} failed: the traceback of the failing cell is in the captured stderr above'
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f'notebook {self.path.name}'


class NotebookFailed(Exception):
    pass
