"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which cannot be installed offline).

Markdown cells are copied, code cells shown as code (hidden cells, `#|hide`, are left out), and
image links relative to nbs/ are rewritten to be relative to the repository root.
"""

import json
import re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))
parts = ['<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file. -->']
for cell in nb['cells']:
    src = ''.join(cell['source']).strip()
    if not src:
        continue
    if cell['cell_type'] == 'markdown':
        parts.append(re.sub(r'\]\((?!https?:|/|#)([^)]+)\)', r'](nbs/\1)', src))
    elif cell['cell_type'] == 'code' and not re.search(r'^#\|\s*(hide|export)', src, re.M):
        parts.append('```python\n' + src + '\n```')
(root / 'README.md').write_text('\n\n'.join(parts) + '\n', encoding='utf-8')
