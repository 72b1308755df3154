"""Build the alloccount extension against the NumPy installed beside it."""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "alloccount",
            ["alloccount.c"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O2", "-std=c11"],
        ),
    ],
)
