"""
Metadata lives in setup.cfg; this file only declares the C accelerator.

It is optional for C{pip install}: where it cannot be built, pure-Python
code replaces it.  C{make install} also builds it in place and stops when
that fails (C{VPNKIT_NO_SPEEDUPS=1} leaves it out); see docs/testing.md.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("vpnkit._speedups", ["vpnkit/_speedups.c"], optional=True)])
