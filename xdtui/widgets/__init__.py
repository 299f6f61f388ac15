"""Widgets of the console, one per screen area; each styles itself in DEFAULT_CSS."""
