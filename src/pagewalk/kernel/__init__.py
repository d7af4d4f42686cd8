"""The kernel layer: one module per kernel file or system call, each with one reader.

Readers return plain values and records, with units in their names; ``OSError``
becomes a :class:`pagewalk.errors.PagewalkError` here and nowhere else
(:mod:`.oserrors`).  Nothing in this layer decides what a page is: that is
:mod:`pagewalk.core`.  Imports only the foundation (``pagewalk.errors``, ``names``,
``units``, ``extras``, ``parallel``) and its own modules.
"""
