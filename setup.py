"""The compiled kernel-record loop (src/fleetwatch/sources/_kmsgscan.c), built when it can be.

Everything else is in pyproject.toml. The extension is optional: where no C compiler
runs, setuptools warns and the wheel is pure Python, whose reader gives the same events
(fleetwatch.sources.kmsg_compiled says why it is there and what it reads).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fleetwatch.sources._kmsgscan",
            ["src/fleetwatch/sources/_kmsgscan.c"],
            optional=True,
        )
    ],
    exclude_package_data={"fleetwatch.sources": ["*.c"]},  # built, not shipped as data
)
