"""The engine's HTTP side (twisted.web): the health page and the limits every request is held to."""
