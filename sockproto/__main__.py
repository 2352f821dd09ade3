"""
C{python -m sockproto}: the same as the C{sockproto} command.
"""

from .cli import main

main()
