"""Collect every notebook in nbs/ as one pytest item, executed with nbdev's own test runner.

Cells flagged with a `tst_flags` flag from settings.ini (e.g. `#|slow`) are skipped unless the
flag is listed in the environment variable DDPM_BOOK_FLAGS (space separated), exactly as
`nbdev_test --flags slow` would run them.
"""
import os
from pathlib import Path

import pytest

NBS = Path(__file__).parent


def _flags():
    from nbdev.config import get_config
    skip = get_config().get('tst_flags', '').split()
    force = os.environ.get('DDPM_BOOK_FLAGS', '').split()
    return skip, force


def pytest_collect_file(parent, file_path):
    if file_path.suffix == '.ipynb' and not file_path.name.startswith('_') and '.ipynb_checkpoints' not in file_path.parts:
        return NotebookFile.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(session, config, items):
    if not any(isinstance(i, NotebookItem) for i in items) and not config.getoption('keyword') and not config.getoption('markexpr'):
        raise pytest.UsageError(f'no notebook found to test under {NBS}: the test command must never pass on nothing')


class NotebookFile(pytest.File):
    def collect(self):
        yield NotebookItem.from_parent(self, name=self.path.stem)


class NotebookItem(pytest.Item):
    def runtest(self):
        from nbdev.test import test_nb
        os.environ['IN_TEST'] = '1'
        skip, force = _flags()
        ok, secs = test_nb(self.path, skip_flags=skip, force_flags=force, showerr=True)
        if not ok: raise NotebookFailed(self.path.name)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, NotebookFailed):
            return f'{excinfo.value.args[0]} failed: the traceback of the failing cell is in the captured stderr above'
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f'notebook {self.path.name}'


class NotebookFailed(Exception):
    pass
