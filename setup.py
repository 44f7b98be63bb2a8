"""
Metadata lives in setup.cfg; this file only declares the optional C
accelerator, which pure-Python code replaces when it cannot be built.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("vpnkit._speedups", ["vpnkit/_speedups.c"], optional=True)])
