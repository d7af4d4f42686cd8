"""The core layer: what a page is, decided once, and the :class:`~.process.Process`
façade over the kernel layer.

:mod:`.states` holds the page states and the RSS, PSS and USS rules; :mod:`.flags`
the kpageflags table; :mod:`.pagetable` the decoded per-page arrays and counts;
:mod:`.translate` single addresses without numpy; :mod:`.where` page selection.
Imports only the kernel layer and the foundation.
"""
