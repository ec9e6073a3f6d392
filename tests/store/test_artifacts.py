import pytest

from loopml.errors import ArtifactError
from loopml.store import ArtifactStore


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = ArtifactStore(tmp_path)
    a = store.put(b"abc", kind="models", suffix=".json")
    b = store.put(b"abc", kind="models", suffix=".json")
    assert a == b and a.path == f"models/{a.sha256}.json"
    assert store.read(a.path, a.sha256) == b"abc"


@pytest.mark.parametrize("rel", ["../outside.json", "/etc/passwd", "models/../../x"])
def test_paths_outside_the_root_are_refused(tmp_path, rel):
    with pytest.raises(ArtifactError, match="points outside the artifact root; refusing it"):
        ArtifactStore(tmp_path / "root").read(rel, "0" * 64)
