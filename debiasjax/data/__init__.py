"""Data: procedural faces, biased digits and census benchmarks, real-data loaders, and the split
protocol."""

from debiasjax.data.census import census
from debiasjax.data.dataset import Benchmark, Split, roi_mask
from debiasjax.data.digits import biased_digits, digits_split, hide_bias
from debiasjax.data.faces import faces_benchmark, render_faces
from debiasjax.data.splits import Splits, cell_counts, cell_proportions, cell_table, make_splits, \
    yule_phi
from debiasjax.data.tabular import LOADERS, Table, adult, bank, compas, german, standardize, \
    table_benchmark

__all__ = ["Benchmark", "Split", "Splits", "Table", "LOADERS", "adult", "bank", "biased_digits",
           "cell_counts", "cell_proportions", "cell_table", "census", "compas", "digits_split",
           "faces_benchmark", "german", "hide_bias", "make_splits", "render_faces", "roi_mask",
           "standardize", "table_benchmark", "yule_phi"]
