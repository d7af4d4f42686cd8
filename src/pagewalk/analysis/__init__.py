"""The analysis layer: measurements over processes, files and time, built on
:mod:`pagewalk.core` (usage, sharing, page types, working set, snapshots and their
differences, pictures, the exporter's metrics, the machine check).

Analyses return data (records, dicts, arrays), never text: printing is
:mod:`pagewalk.output`'s.
"""
