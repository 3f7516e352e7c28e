"""
Packaging for WebWire for Twisted.

``twisted.plugins`` is listed by hand: it must not have an ``__init__.py``
(Twisted would skip it), so ``find_packages`` cannot see it.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "webwire" / "_version.py").read_text()
).group(1)

setup(
    name="webwire",
    version=VERSION,
    description="WebWire 2.0 binary messaging over WebSockets, for Twisted.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="The WebWire for Twisted developers",
    # An SPDX expression (PEP 639), which replaces the licence classifier.
    license="MIT",
    license_files=["LICENSE"],
    # The project has no public home of its own yet: add "Source",
    # "Issues" and "Documentation" here when it has one.
    project_urls={
        "Protocol (Go reference)": "https://github.com/qbeon/webwire-go",
    },
    keywords=["webwire", "websocket", "twisted", "autobahn", "messaging", "rpc"],
    # What .ci/run proves: the suite on every CPython >= 3.11 it finds.
    python_requires=">=3.11",
    packages=find_packages(include=["webwire", "webwire.*"]) + ["twisted.plugins"],
    package_data={"webwire": ["py.typed", "static/*.js", "static/*.html"]},
    entry_points={"console_scripts": ["webwire = webwire.cli:main"]},
    install_requires=[
        "Twisted[tls]>=26.10",
        "autobahn[twisted]>=26.10.2,<27",
        "zope.interface>=8",
        "attrs",
        "treq>=24.9",
        "prometheus-client>=0.20",
    ],
    extras_require={
        # Browser tests drive Debian's chromium (/usr/bin/chromium) through
        # Playwright; without it they skip.
        "test": ["hypothesis", "playwright", "txredisapi"],
        # The Redis session manager.
        "redis": ["txredisapi"],
        "dev": [
            "build",
            "pydoctor",
            "twine",
            "hypothesis",
            "playwright",
            "txredisapi",
            "mypy>=2.4,<2.5",
            "mypy-zope==1.0.17",
            "ruff",
            "towncrier",
            "coverage",
            # python -m benchmarks.profile samples the server with it.
            "py-spy",
        ],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: No Input/Output (Daemon)",
        "Framework :: Twisted",
        "Intended Audience :: Developers",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Programming Language :: Python :: Implementation :: CPython",
        "Topic :: Internet :: WWW/HTTP",
        "Topic :: Software Development :: Libraries :: Python Modules",
        "Topic :: System :: Networking",
        "Typing :: Typed",
    ],
)
