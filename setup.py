"""The optional C accelerator ``storagectl._rowsum`` (everything else is in pyproject.toml).

``optional=True``: without a compiler or Python's headers the install goes on and
``storagectl.rowsum`` computes the same sums in Python, more slowly. The crc32 of the C source is
compiled in, so a build older than the source is noticed (``storagectl.rowsum.EXTENSION``).
"""

import zlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "storagectl/_rowsum.c"
SOURCE_CRC32 = zlib.crc32((Path(__file__).resolve().parent / SOURCE).read_bytes())

setup(ext_modules=[Extension("storagectl._rowsum", [SOURCE], optional=True,
                             define_macros=[("ROWSUM_SOURCE_CRC32", f"{SOURCE_CRC32:#x}u")])])
