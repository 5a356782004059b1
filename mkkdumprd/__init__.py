"""mkkdumprd: build, size, load and prove Linux kdump capture images."""

__version__ = "0.1.0"
