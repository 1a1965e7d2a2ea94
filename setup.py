"""Only the package list lives here: templates/ and static/ sit at the top of the
repository and ship as portal.templates and portal.static (see pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages("src"), "portal.templates", "portal.static"])
