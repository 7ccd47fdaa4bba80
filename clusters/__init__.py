"""Task representations, similarity, clustering, cluster manifests and leave-one-cluster-out folds.

Entry points (each is one CLI command):

* :func:`run_clustering` - corpus -> ``clusters.yaml``, ``similarity.csv``, plots (``taskmill cluster run``)
* :func:`compare_files` - manifest vs reference taxonomy: ARI, NMI, confusion (``taskmill cluster compare``)
* :func:`write_folds` - manifest + corpus -> ``folds.yaml`` with leakage counts (``taskmill folds make``)
* :func:`write_fold_corpora` - one fold's ``train/`` and ``test/`` corpora (``taskmill folds corpus``)

Heavy libraries (scikit-learn, sentence-transformers, matplotlib) load inside the functions.
"""

from taskmill.clusters.compare import compare_files
from taskmill.clusters.fold_corpus import load_folds, write_fold_corpora
from taskmill.clusters.folds import FoldConfig, write_folds
from taskmill.clusters.leakage import DedupConfig
from taskmill.clusters.manifest import load_manifest
from taskmill.clusters.run import run_clustering
from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.represent import RepresentConfig

__all__ = [
    "ClusterConfig",
    "DedupConfig",
    "FoldConfig",
    "RepresentConfig",
    "compare_files",
    "load_folds",
    "load_manifest",
    "run_clustering",
    "write_fold_corpora",
    "write_folds",
]
