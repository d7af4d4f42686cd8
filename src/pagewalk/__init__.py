"""pagewalk: where every page of a Linux process lives.

The library reads the kernel's own interfaces (``/proc/PID/maps``,
``/proc/PID/pagemap`` and its PAGEMAP_SCAN ioctl) and decodes them exactly::

    import pagewalk
    p = pagewalk.Process(pid)
    report = p.counts()                 # per-mapping page counts
    t = p.translate(0x7ffd1234)         # virtual -> physical
    table = p.page_table(start, end)    # numpy arrays, every bit decoded

Importing the package is cheap: numpy is loaded only by the calls that decode
many pages at once.
"""

from .errors import (
    AccessDenied,
    InvalidArgument,
    NoAddressSpace,
    NoSuchProcess,
    NotMapped,
    PagewalkError,
    ProcessGone,
    Unsupported,
)
from .maps import Mapping, load_maps, parse_maps, read_maps
from .pagemap import PAGE_SIZE
from .process import CountsReport, MappingCounts, Process
from .translate import Translation

__version__ = "0.1.0"

__all__ = [
    "PAGE_SIZE",
    "AccessDenied",
    "CountsReport",
    "InvalidArgument",
    "Mapping",
    "MappingCounts",
    "NoAddressSpace",
    "NoSuchProcess",
    "NotMapped",
    "PagewalkError",
    "Process",
    "ProcessGone",
    "Translation",
    "Unsupported",
    "__version__",
    "load_maps",
    "parse_maps",
    "read_maps",
]
