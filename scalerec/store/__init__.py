"""The run store: the only contract between training and analysis (DESIGN §2)."""

from .runstore import RunStore, read_checkpoints
from .schema import SCHEMA_VERSION

__all__ = ["RunStore", "read_checkpoints", "SCHEMA_VERSION"]
