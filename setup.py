"""The compiled part of pagewalk (src/pagewalk/native.c); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pagewalk.native", ["src/pagewalk/native.c"], extra_compile_args=["-O2", "-std=c11"])])
