"""Every file saeval writes, in one place: the names of run and experiment folders and their
files, and a typed, versioned record (``"schema": "saeval.<kind>/<n>"``) for each file
(no torch, and nothing from the other saeval layers: ``run`` writes through it, ``analysis``
reads through it).

- ``run_folder``, ``experiment_folder``: folder and file names
- ``schema``: the versioning convention; ``json_file``: the one JSON reader and writer
- ``run_record``: ``run.json``; ``checksums``: its ``file_sha256`` checked against the files
- ``experiment_record``: ``experiment.json``
- ``side_effects``: ``side_effects_<task>_<stamp>.json`` and the one KL summary shape
- ``reports``: ``comparison.json`` and ``leaderboard.json``
- ``matched_control``: ``controls/<control>@<scale>.json``, a matched control's search
"""
