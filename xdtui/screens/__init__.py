"""Screens: the host view, the attach view, and the dialogs that ask first."""
