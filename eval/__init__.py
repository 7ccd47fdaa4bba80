"""Evaluation: requests built from corpus rows, scoring and metrics, aggregation, the resumable results
store and leaderboard reports. Model backends live in :mod:`taskmill.backends`; the LOCO fold driver
in :mod:`taskmill.orchestrate`."""
