"""Collect every notebook in nbs/ as one pytest item, executed top to bottom with nbdev's own test runner.

Every cell runs, as in Jupyter's Run All with the notebook's default settings: the book has no test-skip flags
(no `#|slow`); long runs sit under `if FULL:` (chapter 00's `full_settings`), so `DDPM_BOOK_FULL=1 pytest nbs`
runs the full settings instead. A `tst_flags` entry in settings.ini is ignored here on purpose, so that a cell
the reader's Run All executes can never be skipped by the tests.
"""

import os
from pathlib import Path

import pytest

NBS = Path(__file__).parent


def pytest_collect_file(parent, file_path):
    if (
        file_path.suffix == '.ipynb'
        and not file_path.name.startswith('_')
        and '.ipynb_checkpoints' not in file_path.parts
    ):
        return NotebookFile.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(session, config, items):
    if (
        not any(isinstance(i, NotebookItem) for i in items)
        and not config.getoption('keyword')
        and not config.getoption('markexpr')
    ):
        raise pytest.UsageError(f'no notebook found to test under {NBS}: the test command must never pass on nothing')


class NotebookFile(pytest.File):
    def collect(self):
        yield NotebookItem.from_parent(self, name=self.path.stem)


class NotebookItem(pytest.Item):
    def runtest(self):
        from nbdev.test import test_nb
        import torch

        torch.set_grad_enabled(True)
        torch.use_deterministic_algorithms(
            False
        )  # each notebook starts as in a fresh kernel, whatever the last one left
        os.environ['IN_TEST'] = '1'
        ok, secs = test_nb(self.path, skip_flags=[], force_flags=[], showerr=True)  # every cell, as Run All
        if not ok:
            raise NotebookFailed(self.path.name)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookFailed):
            return f'{excinfo.value.args[0]} failed: the traceback of the failing cell is in the captured stderr above'
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f'notebook {self.path.name}'


class NotebookFailed(Exception):
    pass
