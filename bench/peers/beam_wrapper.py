"""The cantilever beam case wrapped the otwrapy way, around otwrap's solver.

A copy of the wrapper that otwrapy 0.13 ships (otwrapy/examples/beam/wrapper.py),
changed only where it must be to drive the SAME binary and template as otwrap's
example (examples/beam): the solver is target/release/beam, the template is
examples/beam/beam_input_template.xml (tokens @F@ @E@ @L@ @I@), the output is
_beam_outputs_.xml with attribute `deviation` of element `outputs`.

As shipped, otwrapy's wrapper runs the solver through a shell
(`coupling_tools.execute("beam -x beam.xml", shell=True, cwd=...)`); `shell=False`
gives the same wrapper without the shell (the best case for the peer).
"""

import csv
import os
from xml.dom import minidom

import openturns as ot
import openturns.coupling_tools as otct
import otwrapy as otw

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOLVER = os.environ.get("BEAM_SOLVER", os.path.join(ROOT, "target", "release", "beam"))
TEMPLATE = os.path.join(ROOT, "examples", "beam", "beam_input_template.xml")
DOE = os.path.join(ROOT, "examples", "beam", "doe.csv")


class Wrapper(ot.OpenTURNSPythonFunction):
    """The otwrapy beam wrapper: temp work dir, template, solver, XML parse."""

    def __init__(self, tmpdir=None, shell=True):
        super().__init__(4, 1)
        self.temp_work_dir = tmpdir
        # As otwrapy's example: one command line string run by the shell.
        self.shell = shell
        self.setInputDescription(["Load", "Young modulus", "Length", "Inertia"])
        self.setOutputDescription(["deviation"])

    def _exec(self, X):
        return [evaluate(X, shell=self.shell, tmpdir=self.temp_work_dir)]


def evaluate(X, shell=False, tmpdir=None):
    """One evaluation, the steps of otwrapy's example wrapper: temp work dir
    (removed after), template filled, solver run, deviation parsed."""
    executable = SOLVER + " -x beam.xml" if shell else [SOLVER, "-x", "beam.xml"]
    with otw.TempWorkDir(dir=tmpdir, prefix="ot-beam-example-", cleanup=True) as cwd:
        infn = os.path.join(cwd, "beam.xml")
        otct.replace(TEMPLATE, infn, ["@F@", "@E@", "@L@", "@I@"], list(X))
        otct.execute(executable, shell=shell, cwd=cwd)
        xmldoc = minidom.parse(os.path.join(cwd, "_beam_outputs_.xml"))
        itemlist = xmldoc.getElementsByTagName("outputs")
        return float(itemlist[0].attributes["deviation"].value)


def read_doe(path=DOE):
    """The shipped design of experiments (header of quoted names, 4 columns)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [[float(v) for v in row] for row in rows[1:] if row]


def points(n, offset=0.0):
    """n distinct points from the design, as benches/beam.rs makes them:
    row k % len(doe) with F + k * 1e-6 (+ offset, to keep separate runs of one
    memoizing Parallelizer from hitting its cache)."""
    doe = read_doe()
    out = []
    for k in range(n):
        p = list(doe[k % len(doe)])
        p[0] += k * 1e-6 + offset
        out.append(p)
    return out


def expected(p):
    F, E, L, I = p
    return float("inf") if I == 0 else F * L**3 / (3 * E * I)


def check(xs, ys):
    """Every output matches the formula to the solver's 7 significant digits."""
    assert len(xs) == len(ys), (len(xs), len(ys))
    for x, y in zip(xs, ys):
        e = expected(x)
        y = float(y) if isinstance(y, (int, float)) else float(y[0])
        if e == float("inf"):
            assert y == e, (x, y)
        else:
            assert abs(y - e) <= 1e-6 * abs(e), (x, y, e)
