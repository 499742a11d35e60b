"""The tagging conformance report of one ENT site over a window (the national "qualification du
marquage"): criteria and thresholds (criteria), figures from the hits (figures), HTML and CSV (render),
the `dnma conformance` command (cli)."""
