"""``edgekit sweep`` and ``edgekit recommend``: one build per grid point of recipe overrides, the results
gathered from the points' report.json files (a stage after the report: nothing earlier imports this)."""
