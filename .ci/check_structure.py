"""Structure checks run by CI (issue 10): every module imports only modules of earlier chapters (lazy imports
included), and no method is attached to a class by assignment (`Cls.name = _fn`). Module size has no cap (issue 24):
a module holds one concern, and ruff formats it."""

import ast
import re
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / 'ddpm_book'
SRC = re.compile(r'File to edit: \.\./nbs/(\S+)\.ipynb')


def chapter_of() -> dict:
    "module name -> its notebook's file stem; notebook stems sort in reading order (08 < 08b < 08c < 09 < 10b ...)."
    out = {}
    for p in LIB.glob('*.py'):
        m = SRC.search(p.read_text())
        if m:
            out[p.stem] = m[1]
    return out


def imported(tree) -> set:
    "ddpm_book modules named by imports anywhere in the module, and by importlib/find_spec calls with a literal name."
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1:
                names.update([mod.split('.')[0]] if mod else [a.name for a in node.names])
            elif mod.startswith('ddpm_book.'):
                names.add(mod.split('.')[1])
            elif mod == 'ddpm_book':
                names.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split('.')[1] for a in node.names if a.name.startswith('ddpm_book.'))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r'ddpm_book\.\w+', node.value)
        ):
            names.add(node.value.split('.')[1])
    return names


def main() -> int:
    chapters, errors = chapter_of(), []
    for p in sorted(LIB.glob('*.py')):
        if p.name in ('_modidx.py', '__init__.py'):
            continue
        text = p.read_text()
        for i, line in enumerate(text.splitlines(), 1):
            if re.match(r'^[A-Z]\w*\.\w+(\s*,\s*[A-Z]\w*\.\w+)*\s*=\s*_', line):
                errors.append(f'{p.name}:{i}: method attached by assignment: {line.strip()[:80]}')
        here = chapters.get(p.stem)
        for dep in sorted(imported(ast.parse(text)) - {p.stem, '__version__', '_modidx'}):
            if dep not in chapters:
                continue
            if not chapters[dep] < here:
                errors.append(f'{p.name} (chapter {here}) imports {dep} (chapter {chapters[dep]}): a later chapter')
    for e in errors:
        print('FAIL:', e)
    print(f'structure: {len(chapters)} modules checked, {len(errors)} problems')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
