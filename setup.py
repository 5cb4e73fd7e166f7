"""Build shim: pyproject.toml holds the metadata and settings; this only lists packages.

The repository's ``models/`` folder ships inside the wheel as the data-only package
``pocketsr_cli._bundled`` (see ``manifest.bundled_dir``; pyproject maps the folder and its
files).  ``packages.find`` cannot discover a package that is not a folder under
``pocketsr_cli/``, and a hand-written list goes stale whenever a sub-package is added, so
the list is computed here.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["pocketsr_cli", "pocketsr_cli.*"]), "pocketsr_cli._bundled"]
)
