"""
C{python -m webwire}: the C{webwire} command-line tool (L{webwire.cli}).
"""

from __future__ import annotations

from webwire.cli import main

if __name__ == "__main__":
    main()
