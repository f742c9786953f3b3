"""Standard figures (matplotlib, imported lazily)."""
from __future__ import annotations
