"""Data: procedural faces and census benchmarks, real-data loaders, and the split protocol."""

from debiasjax.data.census import census
from debiasjax.data.dataset import Benchmark, Split, roi_mask
from debiasjax.data.faces import faces_benchmark, render_faces
from debiasjax.data.splits import Splits, cell_counts, cell_proportions, cell_table, make_splits, \
    yule_phi
from debiasjax.data.tabular import LOADERS, Table, adult, bank, compas, german, standardize, \
    table_benchmark

__all__ = ["Benchmark", "Split", "Splits", "Table", "LOADERS", "adult", "bank", "census",
           "cell_counts", "cell_proportions", "cell_table", "compas", "faces_benchmark", "german",
           "make_splits", "render_faces", "roi_mask", "standardize", "table_benchmark", "yule_phi"]
