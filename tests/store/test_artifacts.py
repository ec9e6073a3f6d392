import io
import pickle
import zipfile

import numpy as np
import pytest

from loopml.errors import ArtifactError
from loopml.store import ArtifactStore
from loopml.store.artifacts import pickle_family, sha256_bytes


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


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_bytes(b"{}")
    store = ArtifactStore(tmp_path / "root")
    (store.root / "models").mkdir(parents=True)
    (store.root / "models" / "link.json").symlink_to(outside)
    with pytest.raises(ArtifactError, match="'models/link.json' points outside the artifact root"):
        store.read("models/link.json", sha256_bytes(b"{}"))


# -- pickle-family files are named from their bytes, without unpickling ------------------------------


def _joblib(tmp_path, compress) -> bytes:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": [1.0, 2.0]}, path, compress=compress)
    return path.read_bytes()


def _zip_with(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_is_named(protocol):
    found = pickle_family(pickle.dumps({"weights": [1.0, 2.0]}, protocol=protocol))
    assert found == ("a pickle (protocol 0 or 1)" if protocol < 2 else f"a pickle (protocol {protocol})")


@pytest.mark.parametrize("compress, kind", [(3, "zlib"), (("gzip", 3), "gzip"), (("bz2", 3), "bz2"),
                                            (("xz", 3), "xz"), (("lzma", 3), "lzma")])
def test_compressed_joblib_files_are_named(tmp_path, compress, kind):
    assert pickle_family(_joblib(tmp_path, compress)) == f"a joblib file ({kind}-compressed pickle)"


def test_an_uncompressed_joblib_file_is_a_pickle(tmp_path):
    assert pickle_family(_joblib(tmp_path, 0)).startswith("a pickle (protocol")


def test_cloudpickle_is_a_pickle():
    cloudpickle = pytest.importorskip("cloudpickle")
    assert pickle_family(cloudpickle.dumps(lambda x: x + 1)).startswith("a pickle (protocol")


def test_a_zip_holding_a_pickle_is_named():
    # torch.save's format: a zip archive whose archive/data.pkl is a pickle.
    assert pickle_family(_zip_with("archive/data.pkl", pickle.dumps([1]))) == \
        "a zip archive holding a pickle (archive/data.pkl)"
    assert pickle_family(_zip_with("weights.bin", pickle.dumps([1], protocol=4))) == \
        "a zip archive holding a pickle (weights.bin)"


def test_a_numpy_file_of_python_objects_is_named():
    assert pickle_family(_npy(np.array([{"a": 1}], dtype=object))) == \
        "a NumPy array of Python objects (stored as a pickle)"


@pytest.mark.parametrize("data", [b'{"format": "loopml.model/1"}', b'  {"a": 1}', b"PAR1\x00\x00PAR1",
                                  b"I am a text file.", b"", b"\x1f\x8bnot really gzip"])
def test_other_bytes_are_not_called_pickles(data):
    assert pickle_family(data) is None


def test_a_numeric_numpy_file_and_a_plain_zip_are_not_pickles():
    assert pickle_family(_npy(np.arange(3))) is None
    assert pickle_family(_zip_with("model.json", b"{}")) is None
