#!/usr/bin/env python3
"""Prints the dependencies between the top-level modules of otwrap-runtime
(from `crate::<module>` paths and `use crate::...` lines, doc links and
comments excluded) and every cycle among them. Exits 1 on a cycle or when
`core` uses any other module. Usage: scripts/module-deps.py [src dir]"""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'otwrap-runtime', 'src')
# modules re-exported at the crate root under another name
ALIASES = {'model': 'core', 'host': 'core', 'codec': 'core'}
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith('.rs'):
            continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, src)
        top = rel.split(os.sep)[0].removesuffix('.rs')
        if top in ('lib',):
            continue
        if top == 'backend':
            # each backend is its own node: backend/<name>
            parts = rel.split(os.sep)
            top = 'backend' if len(parts) == 2 and parts[1] == 'mod.rs' else 'backend/' + parts[1].removesuffix('.rs')
        deps = mods.setdefault(top, set())
        text = open(path).read()
        in_test = False
        for line in text.split('\n'):
            s = line.strip()
            if s.startswith('//'):
                continue
            if s.startswith('#[cfg(test)]'):
                in_test = True  # tests may reach anywhere
            if in_test:
                continue
            for m in re.finditer(r'crate::(\w+)(?:::(\w+))?', s):
                dep = m.group(1)
                dep = ALIASES.get(dep, dep)
                if dep == 'backend' and m.group(2) and os.path.exists(os.path.join(src, 'backend', m.group(2))) or \
                        dep == 'backend' and m.group(2) and os.path.exists(os.path.join(src, 'backend', m.group(2) + '.rs')):
                    dep = 'backend/' + m.group(2)
                if dep != top and not top.startswith(dep + '/'):
                    deps.add(dep)
names = set(mods)
for m in mods:
    mods[m] = {d for d in mods[m] if d in names or d.split('/')[0] in names}
for m in sorted(mods):
    print(f'{m:22} -> {", ".join(sorted(mods[m])) or "-"}')
# cycles: strongly connected components
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in mods.get(v, ()):
        if w not in mods: continue
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in sorted(mods):
    if v not in index: strong(v)
bad = False
for c in sccs:
    print('CYCLE:', ' <-> '.join(c)); bad = True
if mods.get('core'):
    print('core depends on:', ', '.join(sorted(mods['core']))); bad = True
sys.exit(1 if bad else 0)
