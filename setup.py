"""Install ddpm_book from settings.ini (nbdev 2 layout, without pkg_resources)."""
from configparser import ConfigParser
from pathlib import Path
import re
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent / 'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': 'Apache-2.0'}  # settings.ini name -> SPDX license expression
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable']  # status = N picks 'N - ...'
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
readme = Path(__file__).parent / 'README.md'
raw_base = cfg['git_url'].replace('https://github.com/', 'https://raw.githubusercontent.com/') + f"/{cfg['branch']}/"

def _long_description() -> str:
    "README.md with relative image links made absolute, so that the pictures show on a package index page too."
    if not readme.exists(): return cfg['description']
    return re.sub(r'(!\[[^\]]*\]\()(?!https?:)([^)]+\))', lambda m: m[1] + raw_base + m[2], readme.read_text(encoding='utf-8'))

setuptools.setup(
    name=cfg['lib_name'].replace('_', '-'),
    version=cfg['version'],
    description=cfg['description'],
    long_description=_long_description(),
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license_expression=licenses[cfg['license']], url=cfg['git_url'], keywords=cfg['keywords'].split(),
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status']) - 1],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
        'Programming Language :: Python :: 3',
    ],
    packages=setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data=True,
    package_data={cfg['lib_path']: ['models/*.pt']},  # the book's shipped model (chapter 10b)
    python_requires='>=' + cfg['min_python'],
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'video': ['imageio-ffmpeg'], 'ui': ['voila>=0.5', 'bqplot>=0.12']},  # video: MP4 output (GIFs need nothing extra)
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'ddpm_book.commands': cfg.get('command_plugins', '').split(),  # later chapters' subcommands (chapter 14's load_command_plugins)
        'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
