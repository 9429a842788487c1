"""xpdeploy: campaign-as-code for the Xtremepush external API."""

from __future__ import annotations

__version__ = "0.1.0"
