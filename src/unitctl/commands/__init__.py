"""The commands layer: one module per verb, each a keyword-only ``run(...)`` returning a result object.

settings.py  typed, frozen settings per unitctl.toml table: flags merged over the file (flags win)
report.py    the result object every reporting command returns, the outcome vocabulary, the ``--json`` envelope
             and the one place that prints a result (text or JSON)
edges.py     the real systemd backend and probes the commands use (tests replace them)
render.py rewrite.py diff.py verify.py apply.py status.py history.py fetch.py deploy.py   one verb each

cli.py declares the options and calls ``run``; nothing here imports typer.
"""
