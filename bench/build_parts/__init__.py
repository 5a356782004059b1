"""Parts of bench/build.py: where a build's time goes (profile.py) and the hand-made image
it is compared with (handmade.py)."""
