"""The demo's results and report: where a run keeps its files (layout), the
fairness checks (fairness), results.json (results), the pictures (figures)
and the HTML page (page)."""
