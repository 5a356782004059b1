"""kdump.conf: the data model, the parser and its validation."""
