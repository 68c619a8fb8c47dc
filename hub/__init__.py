"""The safety hub."""

from hub._malloc import limit_arenas

limit_arenas()  # before any thread starts: see hub/_malloc.py
