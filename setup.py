"""Only the package list lives here: templates/ and static/ sit at the top of the
repository and ship as portal.templates and portal.static (see pyproject.toml).

Folders of data (migrations, translations, each folder of templates and static files)
are listed as packages too: setuptools ships a folder's files only from a package it was
told about, and warns that it will stop guessing."""

from setuptools import find_namespace_packages, setup


def shipped(folder: str) -> list[str]:
    """portal.templates or portal.static, and each folder inside it."""
    return [
        f"portal.{folder}",
        *(f"portal.{folder}.{name}" for name in find_namespace_packages(folder)),
    ]


setup(
    packages=[
        *find_namespace_packages("src", include=["portal", "portal.*"], exclude=["*__pycache__"]),
        *shipped("templates"),
        *shipped("static"),
    ]
)
