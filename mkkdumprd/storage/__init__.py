"""Block storage under a local dump target: discovery (stack.py) and what the capture
image needs to set it up (capture.py)."""
