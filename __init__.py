"""taskmill: instruction-tuning corpora, task clusters, training and leave-one-cluster-out evaluation."""

__version__ = "0.1.0"
