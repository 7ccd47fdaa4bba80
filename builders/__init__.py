"""Corpus builders: collections of tasks, sources, instance formats, mixing, and atomic writers.

``taskmill build COLLECTION --out DIR`` is :func:`taskmill.builders.build.build_collection`.
"""
