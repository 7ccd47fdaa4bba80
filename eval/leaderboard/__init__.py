"""Leaderboards from ``taskmill eval`` results: ``taskmill report RESULTS... --out DIR``.

Modules: ``load`` (find and read results), ``board`` (merge runs into rows and cells, deltas),
``paired`` (paired bootstrap intervals of deltas), ``plots`` (matplotlib SVGs), ``text``
(Markdown and CSV), ``html`` (the self-contained page), ``report`` (writes them all).
"""
