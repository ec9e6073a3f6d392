"""Where loopml keeps the process state: the metadata store and the artifact files."""

from loopml.store.artifacts import ArtifactRef, ArtifactStore
from loopml.store.metadata import ModelVersion, SnapshotRecord, Store, store_url

__all__ = ["ArtifactRef", "ArtifactStore", "ModelVersion", "SnapshotRecord", "Store", "store_url"]
