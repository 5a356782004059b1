"""The capture image as data (spec), and its cpio writer and reader."""
