"""syncd: keeps a Yeastar P-Series PBX company phonebook complete and correct."""

__version__ = "0.1.0"
