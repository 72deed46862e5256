"""The real-browser test (issue 15), run by .ci/run: Playwright for Python drives Debian's headless Chromium.

1. `ddpm-book ui` on a free loopback port with a temporary runs folder: start a quick run from the page and watch
   its step counter and loss chart advance until it is finished; sample it (Generate, then another seed gives
   another image); start a long run, Stop it (a stop checkpoint appears), Resume it (it continues); a
   path-traversal run name is refused in the page.
2. JupyterLab on a copy of nbs/: run chapters 02, 10b and 12, move each one's widget and check its picture changed.
3. The static book (`ddpm-book book`): open its index, follow every chapter link, check no image is broken.

Screenshots go to $SCREENSHOTS (default .ci/screenshots). Usage: python .ci/browser_test.py [ui] [lab] [book]
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get('SCREENSHOTS', ROOT / '.ci' / 'screenshots'))
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def serve(cmd: list, url: str, timeout: float = 180) -> subprocess.Popen:
    "Start a server process and wait until `url` answers 200."
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if urllib.request.urlopen(url, timeout=30).status == 200:
                return p
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f'FAIL: {cmd[:4]} exited with {p.returncode}')
        time.sleep(0.5)
    sys.exit(f'FAIL: {url} did not answer within {timeout} s')


def stop(p: subprocess.Popen):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(p.pid, signal.SIGKILL)


def until(cond, what: str, timeout: float = 180, every: float = 0.5):
    "Poll cond() until it returns something true; fail naming `what`."
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(every)
    sys.exit(f'FAIL: {what} (waited {timeout} s)')


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f'{name}.png'), full_page=True)


def row(page, name: str) -> list:
    "The cells of run `name`'s row in the runs table, [] if it is not there."
    return page.evaluate(
        """n => { for (const tr of document.querySelectorAll('table.ddpm-runs tr'))
        { const td = [...tr.querySelectorAll('td')].map(x => x.textContent);
          if (td[0] === n) return td; } return []; }""",
        name,
    )


def field(page, label: str):
    "The input of the form widget whose description is `label`."
    return page.locator('.widget-inline-hbox', has=page.locator('label', has_text=label)).locator('input, select').first


def tab(page, title: str):
    page.locator('.lm-TabBar-tab', has_text=title).first.click()
    time.sleep(0.3)


def start_from_form(page, name: str, steps: int):
    tab(page, 'New run')
    field(page, 'name').fill(name)
    field(page, 'steps').fill(str(steps))
    field(page, 'steps').press('Tab')
    quick = field(page, 'quick')
    if not quick.is_checked():
        quick.check()
    page.get_by_role('button', name='Start').click()


def pick(page, name: str):
    tab(page, 'Runs')
    sel = page.locator('.widget-dropdown', has=page.locator('label', has_text='run')).locator('select').first
    until(lambda: name in sel.inner_text(), f'run {name} in the picker', 30)
    sel.select_option(label=name)
    time.sleep(0.5)


def test_ui(pw):
    runs, port, tok = Path(tempfile.mkdtemp()) / 'runs', free_port(), secrets.token_urlsafe(16)
    url = f'http://127.0.0.1:{port}/?token={tok}'
    srv = serve(
        [sys.executable, '-m', 'ddpm_book.cli', 'ui', '--runs', str(runs), '--port', str(port), '--token', tok], url
    )
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        page.goto(url)
        page.locator('.lm-TabBar-tab', has_text='New run').wait_for(timeout=120_000)
        # a quick run: the step counter and the loss chart advance, then it is finished
        start_from_form(page, 'quick1', 400)
        tab(page, 'Runs')
        steps, charts = set(), set()

        def finished():
            r = row(page, 'quick1')
            if r:
                steps.add(r[2])
            if r and r[1] == 'running':
                charts.add(page.locator('.widget-image').first.screenshot())  # the picked run's loss and LR charts
            return r and r[1] == 'finished'

        until(finished, 'quick1 finished in the runs table', 300)
        print(f'quick1: step counter showed {sorted(steps)}')
        assert len(steps) >= 3, f'the step counter did not advance: {steps}'
        assert len(charts) >= 2, (
            f'the loss chart did not change while the run trained ({len(charts)} distinct pictures)'
        )
        pick(page, 'quick1')
        shot(page, 'ui_runs')
        # sample it: an image appears, and another seed gives another image
        tab(page, 'Sample')
        page.get_by_role('button', name='Load the picked run').click()
        gen = page.get_by_role('button', name='Generate')
        gen.wait_for(timeout=120_000)
        studio = (
            page.locator('.widget-vbox', has=gen).filter(has=page.locator('.widget-image')).last
        )  # the studio's own panel
        grid = studio.locator('.widget-image').first
        blank = grid.screenshot()
        gen.click()
        until(lambda: 'network calls' in page.inner_text('body'), 'sampling finished', 180)
        until(lambda: grid.screenshot() != blank, 'the samples to appear', 30)
        a = grid.screenshot()
        seed = studio.locator('.widget-inline-hbox', has=page.locator('label', has_text='seed')).locator('input').first
        seed.fill('7')
        seed.press('Enter')
        gen.click()
        time.sleep(1)
        until(lambda: grid.screenshot() != a, 'a different image for another seed', 180)
        shot(page, 'ui_sample')
        # a long run: Stop writes a stop checkpoint, Resume continues it
        start_from_form(page, 'long1', 1_000_000)
        tab(page, 'Runs')
        until(
            lambda: (r := row(page, 'long1')) and r[1] == 'running' and int(r[2].split('/')[0]) >= 20,
            'long1 running past step 20',
            300,
        )
        pick(page, 'long1')
        page.get_by_role('button', name='Stop').click()
        until(lambda: (r := row(page, 'long1')) and r[1] == 'stopped', 'long1 stopped', 180)
        stops = list((runs / 'long1' / 'checkpoints').glob('ckpt_stop_*.pt'))
        assert len(stops) == 1, stops
        stop_step = int(stops[0].stem.split('_')[-1])
        page.get_by_role('button', name='Resume').click()
        until(
            lambda: (r := row(page, 'long1')) and r[1] == 'running' and int(r[2].split('/')[0]) > stop_step,
            'long1 resumed past its stop step',
            300,
        )
        shot(page, 'ui_resumed')
        page.get_by_role('button', name='Stop').click()
        until(lambda: (r := row(page, 'long1')) and r[1] == 'stopped', 'long1 stopped again', 180)
        # a path-traversal name is refused in the page, and nothing is created outside the runs folder
        before = sorted(p.name for p in runs.parent.iterdir())
        start_from_form(page, '../evil', 3)
        until(
            lambda: 'refused' in page.inner_text('body') and 'is not allowed' in page.inner_text('body'),
            'the traversal name refused',
            30,
        )
        assert sorted(p.name for p in runs.parent.iterdir()) == before and not (runs.parent / 'evil').exists()
        shot(page, 'ui_refused')
        print(
            'ui: quick run watched to the end, sampled with two seeds, long run stopped and resumed, traversal refused'
        )
    finally:
        browser.close()
        stop(srv)


def run_all(page):
    "Run every cell of the open notebook in JupyterLab and wait for the kernel to be idle."
    page.locator('.jp-Notebook').first.wait_for(timeout=120_000)
    until(
        lambda: 'Idle' in page.locator('.jp-StatusBar-Widget', has_text='|').first.inner_text(),
        'the kernel to start',
        120,
    )
    page.locator('.jp-Notebook .jp-Cell').first.click()  # make this notebook the one the Run menu acts on
    page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
    page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
    time.sleep(2)
    done = """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                        .map(x => x.textContent.trim());
                      return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t)); }"""
    try:
        until(
            lambda: page.evaluate(done),
            'every cell of the notebook to run',
            float(os.environ.get('LAB_TIMEOUT', 900)),
            1.0,
        )
    except SystemExit:
        shot(page, 'lab_timeout')
        print(
            page.evaluate(
                "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(x => "
                "x.textContent.trim()).join(' ')"
            )
        )
        print(
            page.evaluate(
                "() => "
                "[...document.querySelectorAll('.jp-OutputArea-output[data-mime-type*=error]')].map(x => "
                "x.textContent.slice(0, 300)).join(' | ')"
            )
        )
        raise


def output_picture(page, box):
    return box.screenshot()


def test_lab(pw):
    tmp = Path(tempfile.mkdtemp())
    nbs = tmp / 'nbs'
    shutil.copytree(ROOT / 'nbs', nbs, ignore=shutil.ignore_patterns('.ipynb_checkpoints'))
    settings = tmp / 'lab-settings' / '@jupyterlab' / 'notebook-extension'
    settings.mkdir(parents=True)
    (settings / 'tracker.jupyterlab-settings').write_text(
        json.dumps({'windowingMode': 'none'})
    )  # every cell in the page, not only the visible ones
    os.environ['JUPYTERLAB_SETTINGS_DIR'] = str(tmp / 'lab-settings')
    port, tok = free_port(), secrets.token_urlsafe(16)
    srv = serve(
        [
            sys.executable,
            '-m',
            'jupyterlab',
            '--no-browser',
            f'--port={port}',
            '--ServerApp.ip=127.0.0.1',
            f'--IdentityProvider.token={tok}',
            f'--ServerApp.root_dir={nbs}',
            '--allow-root',
            '--LabApp.news_url=',
        ],
        f'http://127.0.0.1:{port}/lab?token={tok}',
    )
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        for i, (nb, move) in enumerate(
            (('02_forward.ipynb', 'slider'), ('10b_pipeline.ipynb', 'studio'), ('12_interpolation.ipynb', 'slider'))
        ):
            page = browser.new_page(
                viewport={'width': 1280, 'height': 1000}
            )  # a workspace of its own: only this notebook open
            page.goto(f'http://127.0.0.1:{port}/lab/workspaces/test{i}/tree/{nb}?token={tok}&reset')
            run_all(page)
            if move == 'studio':
                gen = page.get_by_role('button', name='Generate').last
                panel = page.locator('.widget-vbox', has=gen).filter(has=page.locator('.widget-image')).last
                img = panel.locator('.widget-image').first
                img.scroll_into_view_if_needed()
                a = img.screenshot()
                panel.locator('.widget-inline-hbox', has=page.locator('label', has_text='seed')).locator(
                    'input'
                ).first.fill('5')
                gen.click()
                until(lambda: img.screenshot() != a, f'{nb}: the studio picture to change with the seed', 300)
            else:
                slider = page.locator('.widget-slider [role=slider]').first
                slider.scroll_into_view_if_needed()
                area = page.locator('.jp-OutputArea', has=slider).first
                a = area.screenshot()
                slider.focus()
                for _ in range(5):
                    slider.press('ArrowRight')
                    time.sleep(0.2)
                until(lambda: area.screenshot() != a, f'{nb}: the picture to change when the slider moves', 300)
            shot(page, 'lab_' + nb.split('.')[0])
            print(f'lab: {nb}: the widget moved and its picture changed')
            page.close()
    finally:
        browser.close()
        stop(srv)


def test_book(pw):
    site = Path(tempfile.mkdtemp()) / 'site'
    r = subprocess.run(
        [sys.executable, '-m', 'ddpm_book.cli', 'book', '--out', str(site)], capture_output=True, text=True
    )
    if r.returncode:
        sys.exit(f'FAIL: ddpm-book book: {r.stderr[-2000:]}')
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page()
        page.goto((site / 'index.html').as_uri())
        links = page.evaluate("() => [...document.querySelectorAll('a.chapter')].map(a => a.href)")
        assert len(links) >= 20, links
        for href in links:
            page.goto(href)
            broken = page.evaluate(
                "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i "
                "=> i.src.slice(0, 80))"
            )
            assert not broken, (href, broken)
        shot(page, 'book_last_chapter')
        print(f'book: {len(links)} chapters opened from the index, no broken image')
    finally:
        browser.close()


if __name__ == '__main__':
    which = sys.argv[1:] or ['ui', 'lab', 'book']
    t0 = time.time()
    with sync_playwright() as pw:
        for name in which:
            globals()[f'test_{name}'](pw)
            print(f'{name}: passed ({time.time() - t0:.0f} s so far)')
    print(f'browser test passed: {", ".join(which)} in {time.time() - t0:.0f} s; screenshots in {SHOTS}')
