"""Task representations, similarity, clustering, cluster manifests and leave-one-cluster-out folds."""
