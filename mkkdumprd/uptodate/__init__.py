"""The up-to-date fast path of `mkkdumprd build`: a stamp of what the last full check
observed (stamp.py), the observations themselves (observations.py) and how a full check
records them (recorder.py)."""
