"""Orchestration, on top of every stage: ``taskmill run`` (build -> cluster -> folds -> train + eval
per fold -> leaderboard), the leave-one-cluster-out fold driver (``taskmill loco``) and its recipes
(SFT, DPO after SFT). Stages never import this room; it imports them."""
