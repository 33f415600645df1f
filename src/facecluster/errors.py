"""Errors a user can act on: one base, one line each, naming the file or key and the fix."""

from __future__ import annotations


class FaceclusterError(Exception):
    """Base of every error the user can act on; the command line prints its message as one line."""


class ModelError(FaceclusterError, ValueError):
    """A saved model cannot be used: damaged, tampered with, of another version, or for other features."""


class MissingExtraError(FaceclusterError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


class ModelFileError(FaceclusterError, RuntimeError):
    """A model file is missing or is not the file we pinned; the message names the file and how to reinstall."""


class ConfigError(FaceclusterError, ValueError):
    """A configuration the user gave cannot be used; the message says which key and why."""
