"""The service side: kdumpctl's verbs, their lock, default places, integration files.

locations.py is standard-library only (the loader imports it); service.py holds the verbs;
lock.py serialises them; integration.py installs the systemd unit and kernel hooks.
"""
