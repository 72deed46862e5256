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
import re
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
    "The input of the form widget whose description is exactly `label`."
    exact = page.locator('label', has_text=re.compile(f'^{re.escape(label)}$'))
    return page.locator('.widget-inline-hbox', has=exact).locator('input, select').first


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
    sel = (
        page.locator('.widget-dropdown', has=page.locator('label', has_text=re.compile('^run$')))
        .locator('select')
        .first
    )
    until(lambda: name in sel.inner_text(), f'run {name} in the picker', 30)
    sel.select_option(label=name)
    time.sleep(0.5)


PAYLOAD = '<img src=x onerror="window.__pwned = (window.__pwned || 0) + 1">'  # a script, if it reaches the page


def hostile_runs(runs: Path):
    "Run folders as an attacker or a crash could leave them: script payloads in each file, a torn line, a list."

    def make(name, files):
        d = runs / name
        (d / 'metrics').mkdir(parents=True)
        for f, text in files.items():
            (d / f).write_text(text)

    make(
        'xss-files',
        {
            'meta.json': json.dumps({'precision': PAYLOAD, 'argv': ['--preset', PAYLOAD]}),
            'config.json': json.dumps({'train': {'steps': PAYLOAD}, 'dataset': {'name': PAYLOAD}}),
            'metrics/events.jsonl': json.dumps({'step': PAYLOAD, 'loss': 1.0}) + '\n',
            'train.log': PAYLOAD + '\n',
            'notes.md': PAYLOAD,
        },
    )
    make('torn', {'metrics/events.jsonl': json.dumps({'step': 10, 'loss': 0.5}) + '\n{"step": 20, "lo'})
    make('listmeta', {'meta.json': '[1, 2]'})


def kernels(srv: subprocess.Popen) -> list[int]:
    "The ipykernel processes below the ui server."
    kids, out = {}, []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            ppid = int(Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[1])
            cmd = Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace')
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append((int(pid), cmd))
    todo = [srv.pid]
    while todo:
        for pid, cmd in kids.get(todo.pop(), []):
            todo.append(pid)
            if 'ipykernel' in cmd:
                out.append(pid)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
    return 0.0


def pwned(page) -> bool:
    return bool(page.evaluate('() => window.__pwned'))


def open_app(page, url: str) -> float:
    "Open the app; seconds until its tabs are shown."
    t0 = time.time()
    page.goto(url)
    page.locator('.lm-TabBar-tab', has_text='New run').wait_for(timeout=120_000)
    return time.time() - t0


def click_button(page, name: str):
    page.get_by_role('button', name=name).click()


def test_ui(pw):
    runs, port, tok = Path(tempfile.mkdtemp()) / 'runs', free_port(), secrets.token_urlsafe(16)
    hostile_runs(runs)
    base = f'http://127.0.0.1:{port}'
    cmd = [sys.executable, '-m', 'ddpm_book.cli', 'ui', '--runs', str(runs), '--port', str(port), '--token', tok]
    srv = serve(cmd + ['--cull-after', '20'], f'{base}/?token={tok}')
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    try:
        page = browser.new_page(viewport={'width': 1400, 'height': 900})
        load_s = open_app(page, f'{base}/login?next=%2F&token={tok}')
        assert 'token' not in page.url, f'the token stayed in the address: {page.url}'
        print(f'ui: page loaded in {load_s:.1f} s; address {page.url}')
        # hostile files: shown as text, no script ran, each bad run is one row and the others work
        until(lambda: row(page, 'xss-files'), 'the hostile run in the table', 60)
        assert PAYLOAD in ''.join(row(page, 'xss-files')), row(page, 'xss-files')
        assert row(page, 'torn')[2].startswith('10 /'), row(page, 'torn')
        assert 'holds a list' in row(page, 'listmeta')[-1], row(page, 'listmeta')
        pick(page, 'xss-files')
        page.get_by_text('logs (train.log, train.err.log)').first.click()  # unfold the logs
        time.sleep(1)
        assert not pwned(page), 'a script from a run file ran in the page'
        # a script typed as a run name is refused and shown as text
        start_from_form(page, PAYLOAD, 3)
        until(
            lambda: 'refused' in page.inner_text('body') and 'is not allowed' in page.inner_text('body'), 'refusal', 30
        )
        assert PAYLOAD in page.inner_text('body') and not pwned(page), 'the typed name reached the page as markup'
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
        assert len(charts) >= 2, f'the loss chart did not change while the run trained ({len(charts)} pictures)'
        pick(page, 'quick1')
        shot(page, 'ui_runs')
        # sample it: an image appears, another seed gives another image, the grid can be downloaded
        tab(page, 'Sample')
        page.get_by_role('button', name='Load the picked run').click()
        gen = page.get_by_role('button', name='Generate')
        gen.wait_for(timeout=120_000)
        studio = page.locator('.widget-vbox', has=gen).filter(has=page.locator('.widget-image')).last
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
        link = page.locator('a[download]', has_text='the grid')
        link.wait_for(timeout=30_000)
        with page.expect_download() as dl:
            link.click()
        got = Path(dl.value.path()).read_bytes()
        assert dl.value.suggested_filename == 'samples_seed7.png' and got[:4] == b'\x89PNG', dl.value.suggested_filename
        assert (runs / 'quick1' / 'sample.log').is_file()
        shot(page, 'ui_sample')
        tab(page, 'Interpolate')
        page.locator('.widget-slider:visible').first.wait_for(timeout=120_000)
        shot(page, 'ui_interpolate')
        # a long run: Stop writes a stop checkpoint, Resume continues it
        start_from_form(page, 'long1', 1_000_000)
        tab(page, 'Runs')
        until(
            lambda: (r := row(page, 'long1')) and r[1] == 'running' and int(r[2].split('/')[0]) >= 20,
            'long1 running past step 20',
            300,
        )
        pick(page, 'long1')
        click_button(page, 'Stop')
        until(lambda: (r := row(page, 'long1')) and r[1] == 'stopped', 'long1 stopped', 180)
        stops = list((runs / 'long1' / 'checkpoints').glob('ckpt_stop_*.pt'))
        assert len(stops) == 1, stops
        stop_step = int(stops[0].stem.split('_')[-1])
        click_button(page, 'Resume')
        until(
            lambda: (r := row(page, 'long1')) and r[1] == 'running' and int(r[2].split('/')[0]) > stop_step,
            'long1 resumed past its stop step',
            300,
        )
        shot(page, 'ui_resumed')
        click_button(page, 'Stop')
        until(lambda: (r := row(page, 'long1')) and r[1] == 'stopped', 'long1 stopped again', 180)
        assert page.get_by_role('button', name='Stop').is_disabled(), 'Stop enabled on a stopped run'
        # Stop right after Start: stopped, nothing to save (not failed)
        start_from_form(page, 'early1', 1_000_000)
        pick(page, 'early1')
        click_button(page, 'Stop')
        until(lambda: (r := row(page, 'early1')) and r[1] == 'stopped', 'early1 stopped', 120)
        assert 'nothing to save' in page.inner_text('body')
        # an offline run that fails says why in its page
        tab(page, 'New run')
        field(page, 'data').select_option('cifar10')
        start_from_form(page, 'offline1', 10)
        tab(page, 'Runs')
        until(lambda: (r := row(page, 'offline1')) and r[1] in ('failed', 'running'), 'offline1 started', 180)
        if (
            until(lambda: (r := row(page, 'offline1')) and r[1] != 'running' and r[1], 'offline1 ended', 180)
            == 'failed'
        ):
            pick(page, 'offline1')
            until(lambda: "cannot load 'cifar10'" in page.inner_text('body'), 'the failed run showing its reason', 30)
            assert 'exit code' in page.inner_text('body')
        shot(page, 'ui_failed')
        # two runs overlaid on the Compare tab
        tab(page, 'Compare')
        page.locator('select[multiple]').first.select_option(['quick1', 'long1'])
        until(lambda: page.locator('path.line').count() >= 2, 'two curves on the Compare tab', 60)
        assert 'train.steps' in page.inner_text('body')
        shot(page, 'ui_compare')
        tab(page, 'New run')
        shot(page, 'ui_new')
        # delete: the folder goes to the trash inside the runs folder
        pick(page, 'torn')
        click_button(page, 'Delete')
        until(lambda: not row(page, 'torn'), 'torn gone from the table', 30)
        assert list((runs / '.trash').glob('torn-*')) and not (runs / 'torn').exists()
        # the traversal name is refused, and nothing is created outside the runs folder
        before = sorted(p.name for p in runs.parent.iterdir())
        start_from_form(page, '../evil', 3)
        until(lambda: 'is not allowed' in page.inner_text('body'), 'the traversal name refused', 30)
        assert sorted(p.name for p in runs.parent.iterdir()) == before and not (runs.parent / 'evil').exists()
        shot(page, 'ui_refused')
        assert not pwned(page)
        # reloads: each makes a kernel; the closed pages' kernels are removed, the open page keeps working
        tab(page, 'Runs')
        k0 = len(kernels(srv))
        mem = [rss_mb(k) for k in kernels(srv)]
        for _ in range(3):
            page.reload()
            page.locator('.lm-TabBar-tab', has_text='New run').wait_for(timeout=120_000)
        k1 = len(kernels(srv))
        until(lambda: len(kernels(srv)) <= k0, f'kernels of closed pages removed ({k1} after 3 reloads)', 120, 2)
        until(lambda: row(page, 'quick1'), 'the reloaded page working', 60)
        print(f'ui: kernels {k0} -> {k1} after 3 reloads -> {len(kernels(srv))}; kernel RSS {max(mem):.0f} MB')
        assert page.locator('.ddpm-lost').first.is_hidden(), 'the lost-connection banner shows on a live page'
        print('ui: hostile files and names escaped; runs watched, sampled, downloaded, stopped, compared, deleted')
    finally:
        browser.close()
        stop(srv)
        stop_runs(runs)


def stop_runs(runs: Path):
    "Stop the training processes of the runs in `runs` (they run in sessions of their own and outlive the UI)."
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if str(runs) in Path(f'/proc/{pid}/cmdline').read_bytes().decode(errors='replace'):
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            continue


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
