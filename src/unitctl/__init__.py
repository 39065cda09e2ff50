"""unitctl: render, rewrite and safely deploy systemd units for Gunicorn-served Python apps."""

__version__ = "0.1.0"
