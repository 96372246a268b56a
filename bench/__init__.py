"""Safekeep's benchmark: an office-like dataset, a mutator, and a harness that runs Safekeep and
restic side by side on the same data in the same run (see ``python -m bench --help``)."""
