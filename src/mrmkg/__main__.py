from mrmkg.cli import _entry

_entry()
